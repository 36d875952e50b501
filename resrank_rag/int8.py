"""Int8 Linear layers for CPU inference: int8 weights per output channel, activations quantised per row at each call."""

from __future__ import annotations

import torch
from torch import nn

QMAX = 127
"""Symmetric int8: values in [-127, 127], so a scale maps the largest magnitude exactly."""


class Int8Linear(nn.Module):
    """Inference-only stand-in for ``nn.Linear``: ``y = (q(x) @ q(W)^T) * s_x * s_w + b``.

    Weights are quantised once, symmetrically per output channel; each input row gets its own scale at
    call time (dynamic quantisation). The product runs in ``torch._int_mm`` (int8 x int8 -> int32, the
    kernel torchao's int8 tensors dispatch to), everything else stays float32. Honours
    ``torch.set_num_threads`` like any other matmul.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / QMAX
        quantised = torch.round(weight / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", quantised.t().contiguous())  # (in, out): the layout _int_mm wants
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(QMAX)
        quantised = torch.round(rows / scale).clamp_(-QMAX, QMAX).to(torch.int8)
        out = torch._int_mm(quantised, self.weight_t).float().mul_(scale).mul_(self.weight_scale.float())
        if self.bias is not None:
            out.add_(self.bias.float())
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside ``module`` with an ``Int8Linear``, in place; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
            count += 1
        else:
            count += quantize_linears(child)
    return count
