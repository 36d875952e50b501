"""Loading the ResRank model the components share, and checking what they are given against it."""

from __future__ import annotations

from functools import lru_cache

from resrank_rag import ResRank
from resrank_rag.embedding_cache import EmbeddingCache


@lru_cache(maxsize=4)
def load_model(name: str, device: str | None = None) -> ResRank:
    """``ResRank.from_pretrained(name, device)``, loaded once per process."""
    return ResRank.from_pretrained(name, device=device)


def check_cache(cache: EmbeddingCache | None, model: ResRank) -> None:
    """Refuse an embedding cache built on another encoder: its vectors would not match the model."""
    if cache is not None and cache.model.encoder_fingerprint != model.encoder_fingerprint:
        raise ValueError(
            f"the EmbeddingCache encodes with encoder {cache.model.encoder_fingerprint} but the model's encoder is "
            f"{model.encoder_fingerprint}; build the cache with the same model: EmbeddingCache(model)"
        )
