"""ResRankEmbedding: the ResRank encoder as a LlamaIndex embedding model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, List, Optional, Union

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.embedding_cache import EmbeddingCache


def load_model(model: Optional[ResRank], model_name: str, device: Optional[str]) -> ResRank:
    """The given model, or the one named by ``model_name`` loaded onto ``device``."""
    if model is None:
        return ResRank.from_pretrained(model_name, device=device)
    if not isinstance(model, ResRank):
        raise TypeError(f"model must be a resrank_rag.ResRank, got {type(model).__name__}")
    if device is not None:
        raise ValueError("device only applies when loading by model_name; move a loaded model yourself (model.to(device))")
    return model


def open_cache(model: ResRank, cache: Union[EmbeddingCache, str, Path, None]) -> EmbeddingCache:
    """An EmbeddingCache for ``model``: the given one, one at a path (":memory:" too), or the user-cache default."""
    if isinstance(cache, EmbeddingCache):
        if cache.model.encoder_fingerprint != model.encoder_fingerprint:
            raise ValueError("the EmbeddingCache was made for another encoder; build it with the same ResRank model")
        return cache
    return EmbeddingCache(model, cache)


class ResRankEmbedding(BaseEmbedding):
    """Query and passage vectors from a ResRank encoder: the vectors ResRankRerank reranks without re-encoding.

    Pass a loaded ``model`` to share it with ``ResRankRerank``, or a ``model_name`` to load one. Passage
    embeddings go through the core ``EmbeddingCache`` (``cache``: an instance, a file path, ":memory:", or
    None for the per-encoder file in the user cache), so a text is encoded once across runs and components.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="ResRank model name or checkpoint folder.")
    embed_batch_size: int = Field(default=32, gt=0, le=2048, description="Passages per encoder batch.")
    device: Optional[str] = Field(default=None, description="Torch device the model was loaded onto by name.")

    _model: ResRank = PrivateAttr()
    _cache: EmbeddingCache = PrivateAttr()

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        model: Optional[ResRank] = None,
        device: Optional[str] = None,
        cache: Union[EmbeddingCache, str, Path, None] = None,
        embed_batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        loaded = load_model(model, model_name, device)
        super().__init__(
            model_name=loaded.name if model is not None else model_name,
            embed_batch_size=embed_batch_size,
            device=device,
            **kwargs,
        )
        self._model = loaded
        self._cache = open_cache(loaded, cache)

    @classmethod
    def class_name(cls) -> str:
        return "ResRankEmbedding"

    @property
    def model(self) -> ResRank:
        """The loaded ResRank model (pass it to ResRankRerank to share it)."""
        return self._model

    @property
    def cache(self) -> EmbeddingCache:
        return self._cache

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._model.encode_query(query).tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return self._cache.encode(texts, batch_size=self.embed_batch_size).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
