"""TextEncoder: an encoder LM that turns each text into one L2-normalised vector."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


def pool(hidden: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """Pool token states (B, T, H) into (B, H): masked mean, last real token, or first token."""
    if method == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if method == "last":
        last = mask.sum(1) - 1  # inputs are right-padded: index of the last real token
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    if method == "cls":
        return hidden[:, 0]
    raise ValueError(f"unknown pooling {method!r}")


CHARS_PER_TOKEN_LIMIT = 32
"""Texts longer than max_tokens * this many characters are cut before tokenising, so a huge passage
costs neither time nor memory; the cut keeps far more text than the token window can hold in practice."""


def clean_texts(texts: Sequence[str], max_tokens: int) -> list[str]:
    """Cut texts far beyond the token window (with a warning) and replace characters UTF-8 cannot
    encode (lone surrogates, e.g. from undecodable bytes) with U+FFFD, which tokenizers reject otherwise."""
    limit = max_tokens * CHARS_PER_TOKEN_LIMIT
    long = [len(text) for text in texts if len(text) > limit]
    if long:
        warnings.warn(
            f"{len(long)} text(s) of up to {max(long):,} characters exceed the {max_tokens}-token window; "
            "only their beginning is used. Chunk long documents before indexing.",
            stacklevel=4,
        )
    return [_encodable(text[:limit]) for text in texts]


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


class TextEncoder(nn.Module):
    """Wraps a Hugging Face encoder (any ``AutoModel``) with its tokenizer and pooling."""

    def __init__(self, model: nn.Module, tokenizer, pooling: str = "mean", max_tokens: int = 256):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_tokens = max_tokens
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._tokenizer_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        texts = clean_texts(texts, self.max_tokens)
        with self._tokenizer_lock:  # fast tokenizers are not safe to call from several threads
            batch = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
        return {key: value.to(self.device) for key, value in batch.items()}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Differentiable (B, dim) L2-normalised vectors."""
        batch = self.tokenize(texts)
        hidden = self.model(**batch).last_hidden_state
        return nn.functional.normalize(pool(hidden, batch["attention_mask"], self.pooling), dim=-1)

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """(N, dim) float32 vectors; batches by length like sentence-transformers."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 4 * batch_size
        for start in tqdm(
            range(0, len(texts), batch_size), desc="Encoding", unit="batch", disable=not show_progress_bar
        ):
            idx = order[start : start + batch_size]
            vectors = self.forward([texts[i] for i in idx])
            out[idx] = vectors.float().cpu().numpy()
        return out
