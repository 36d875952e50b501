"""The reranker LM's keys and values for the prompt's fixed opening, computed once and reused by every inference forward.

Every list starts with the same tokens (``"Rank the passages by relevance to the query.\\nQuery:"``, 13
positions of SmolLM2's prompt). The LM is causal, so their keys and values never depend on what follows:
an inference forward starts from them instead of recomputing them, 13 positions fewer per list. Training
forwards (grad enabled) never use the cache, so gradients still flow through the prefix.

The states belong to the weights they were computed with. They are recomputed when the reranker module
is another object, or when any tensor it held then was changed in place (an optimizer step, a LoRA
update), moved or cast (``.to``), or freed (a layer replaced); ``apply_precision`` and ``merge_adapters``
also call ``clear``.
"""

from __future__ import annotations

import inspect
import threading
import weakref

import torch
from torch import nn

AGREEMENT = 1e-2
"""Largest relative difference between the cached and the full forward for the cache to be used; a causal
LM differs only by rounding (about 1e-7 at fp32), a bidirectional one by far more."""


class PromptPrefixCache:
    """Per-layer (keys, values) of a fixed token prefix, for one reranker LM."""

    def __init__(self, prefix_ids: list[int]):
        self.prefix_ids = list(prefix_ids)
        self._lock = threading.Lock()
        self.clear()

    def __len__(self) -> int:
        return len(self.prefix_ids)

    def clear(self) -> None:
        """Forget the states; the next inference forward computes them again."""
        self._states = None
        self._module = _dead  # a weak reference to the reranker the states were computed for
        self._tensors: tuple[weakref.ref, ...] = ()  # weak: replaced layers are freed, and show as changed
        self._versions: tuple | None = ()

    def states(self, reranker: nn.Module, embed) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | None:
        """The prefix's per-layer (keys, values), each (1, heads, prefix, head_dim); None where the cache
        is not used (grad enabled, an empty prefix, an LM that is not causal or keeps no key-value cache)."""
        if torch.is_grad_enabled() or not self.prefix_ids or not getattr(reranker.config, "use_cache", False):
            return None
        with self._lock:
            if self._module() is not reranker or self._versions != _versions(self._tensors):
                tensors = tuple(weakref.ref(t) for t in (*reranker.parameters(), *reranker.buffers()))
                if _versions(tensors) is None:  # made in inference mode: changes could not be seen
                    return None
                self._argument = _cache_argument(reranker)
                self._states = _compute(reranker, embed, self.prefix_ids, self._argument)
                self._module = weakref.ref(reranker)
                self._tensors, self._versions = tensors, _versions(tensors)
            return self._states

    def forward_kwargs(self, reranker: nn.Module, states, batch: int) -> dict:
        """The forward's keyword arguments that start ``batch`` lists from ``states``."""
        return _forward_kwargs(reranker, states, batch, self._argument)


def _dead():
    return None


def _forward_kwargs(reranker: nn.Module, states, batch: int, argument: str) -> dict:
    from transformers import DynamicCache

    data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in states]
    return {argument: DynamicCache(data, config=reranker.config), "use_cache": True}  # fresh: the forward appends


def _compute(reranker: nn.Module, embed, prefix_ids: list[int], argument: str):
    """The prefix's states, or None if starting from them does not reproduce a full forward (an LM that is
    not causal): checked on the prefix plus one more token."""
    device = embed.weight.device
    n = len(prefix_ids)
    with torch.inference_mode():
        inputs = embed(torch.tensor([prefix_ids + prefix_ids[-1:]], device=device))
        prefix = reranker(inputs_embeds=inputs[:, :n], position_ids=torch.arange(n, device=device)[None], use_cache=True)
        cache = getattr(prefix, "cache", None) or prefix.past_key_values
        states = tuple((layer.keys.clone(), layer.values.clone()) for layer in cache.layers)
        full = reranker(inputs_embeds=inputs, position_ids=torch.arange(n + 1, device=device)[None], use_cache=False)
        cached = reranker(
            inputs_embeds=inputs[:, n:], position_ids=torch.tensor([[n]], device=device),
            **_forward_kwargs(reranker, states, 1, argument),
        )
    full, cached = full.last_hidden_state[0, -1].float(), cached.last_hidden_state[0, -1].float()
    return states if float((full - cached).norm()) <= AGREEMENT * float(full.norm()) else None


def _versions(refs) -> tuple | None:
    """Each referenced tensor's in-place version and storage (moved or cast by ``.to``), None for one that
    was freed; None in all if versions are untracked."""
    try:
        return tuple(None if (t := ref()) is None else (t._version, t.data_ptr()) for ref in refs)
    except RuntimeError:  # inference tensors track no version
        return None


def _cache_argument(reranker: nn.Module) -> str:
    """The forward's name for a key-value cache: ``cache`` in recent transformers, ``past_key_values`` before."""
    model = reranker.get_base_model() if hasattr(reranker, "get_base_model") else reranker
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
