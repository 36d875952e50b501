"""Int8 Linear layers for CPU inference: int8 weights per output channel, activations quantised per row at each call.

Sibling layers that read the same input (a decoder's q/k/v projections, its MLP's gate/up projections) are
fused: one int8 weight, the input quantised once, one matrix product, so a layer costs four quantisations
and four products instead of seven. Each output column is computed exactly as by its own ``Int8Linear``.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

QMAX = 127
"""Symmetric int8: values in [-127, 127], so a scale maps the largest magnitude exactly."""

FUSED_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Children of one module that read the same input in Llama-style decoders (SmolLM2, Llama, Mistral, Qwen2)."""


class Int8Linear(nn.Module):
    """Inference-only stand-in for ``nn.Linear``: ``y = (q(x) @ q(W)^T) * s_x * s_w + b``.

    Weights are quantised once, symmetrically per output channel; each input row gets its own scale at
    call time (dynamic quantisation). The product runs in ``torch._int_mm`` (int8 x int8 -> int32, the
    kernel torchao's int8 tensors dispatch to), everything else stays float32. Honours
    ``torch.set_num_threads`` like any other matmul.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """From a float ``(out, in)`` weight and optional ``(out,)`` bias, e.g. ``Int8Linear(layer.weight, layer.bias)``."""
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / QMAX
        quantised = torch.round(weight / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight_t", quantised.t().contiguous())  # (in, out): the layout _int_mm wants
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(QMAX)
        quantised = rows.div(scale).round_().to(torch.int8)  # |rows / scale| <= QMAX by construction
        out = torch._int_mm(quantised, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8FusedLinears(nn.Module):
    """Several ``nn.Linear`` layers with one input, as one ``Int8Linear`` over their stacked weights.

    Its members (``Int8FusedMember``) take the places of the original layers. The first member called
    with an input computes every member's output in one product; the others are served from it, once
    each. Served outputs are dropped straight away, and the cache is per thread, so concurrent forwards
    never see each other's outputs.
    """

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        weight = torch.cat([layer.weight.detach() for layer in linears])
        bias = None if all(layer.bias is None for layer in linears) else torch.cat([
            torch.zeros(layer.out_features) if layer.bias is None else layer.bias.detach().float() for layer in linears
        ])
        self.product = Int8Linear(weight, bias)
        self.sizes = [layer.out_features for layer in linears]
        self._cache = threading.local()

    def output(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Member ``index``'s output for ``x``: from the product already computed for ``x``, else a new one."""
        entry = getattr(self._cache, "entry", None)
        if entry is None or entry[0] is not x or index in entry[2]:
            entry = (x, self.product(x).split(self.sizes, dim=-1), set())
        entry[2].add(index)
        self._cache.entry = None if len(entry[2]) == len(self.sizes) else entry
        return entry[1][index]  # a view of the product's columns; Llama-style callers only .view() its last dim


class Int8FusedMember(nn.Module):
    """One original layer's place in an ``Int8FusedLinears`` group (the group is registered on the parent)."""

    def __init__(self, group: Int8FusedLinears, index: int, linear: nn.Linear):
        super().__init__()
        object.__setattr__(self, "group", group)  # a reference, not a second registration of its weights
        self.index = index
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.output(x, self.index)

    def extra_repr(self) -> str:
        return f"part {self.index} of a fused int8 group, in_features={self.in_features}, out_features={self.out_features}"


def quantize_linears(module: nn.Module, fuse: bool = True) -> int:
    """Replace every ``nn.Linear`` inside ``module`` with int8, in place, fusing ``FUSED_SIBLINGS``
    (unless ``fuse=False``); returns how many layers were replaced."""
    count = 0
    children = dict(module.named_children())
    for names in FUSED_SIBLINGS if fuse else ():
        linears = [children.get(name) for name in names]
        if all(isinstance(layer, nn.Linear) for layer in linears) and len({layer.in_features for layer in linears}) == 1:
            group = Int8FusedLinears(linears)
            module.add_module("int8_" + "_".join(names), group)
            for index, (name, layer) in enumerate(zip(names, linears)):
                setattr(module, name, Int8FusedMember(group, index, layer))
                del children[name]
            count += len(names)
    for name, child in children.items():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child.weight, child.bias))
            count += 1
        else:
            count += quantize_linears(child, fuse)
    return count
