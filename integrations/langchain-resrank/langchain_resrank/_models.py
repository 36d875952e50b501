"""Loading the ResRank model the components share, and checking what they are given against it.

Both live in the core (``resrank_rag.adapters``), shared with the LlamaIndex packages.
"""

from __future__ import annotations

from pathlib import Path

from resrank_rag import ResRank
from resrank_rag import adapters
from resrank_rag.embedding_cache import EmbeddingCache


def load_model(model: ResRank | str | Path, device: str | None = None, precision: str | None = None) -> ResRank:
    """A loaded ``ResRank`` as given, or the one a name or folder names, loaded once per process.

    ``device`` and ``precision`` (None: auto) apply only when loading by name; with a loaded model they raise.
    """
    return adapters.load_model(model, device, precision=precision)


def check_cache(cache: EmbeddingCache | None, model: ResRank) -> None:
    """Refuse an embedding cache built on another encoder: its vectors would not match the model."""
    if cache is not None:
        adapters.open_cache(model, cache)
