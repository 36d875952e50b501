"""ResRankEmbedding: the ResRank encoder as a LlamaIndex embedding model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, List, Optional, Union

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.adapters import encode_query, load_model, open_cache
from resrank_rag.embedding_cache import EmbeddingCache


class ResRankEmbedding(BaseEmbedding):
    """Query and passage vectors from a ResRank encoder: the vectors ResRankRerank reranks without re-encoding.

    ``model`` is a loaded ``ResRank`` (share it with ``ResRankRerank``) or a model name / checkpoint folder
    to load (``device`` applies then; ``model_name=`` is the same as a name). Passage
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
        model: Union[ResRank, str, None] = None,
        device: Optional[str] = None,
        cache: Union[EmbeddingCache, str, Path, None] = None,
        embed_batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        loaded = load_model(model_name if model is None else model, device)
        super().__init__(
            model_name=loaded.name if isinstance(model, ResRank) else str(model or model_name),
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
        """The query's vector, remembered so that ``ResRankRerank`` can tell it is this encoder's and reuse it."""
        return encode_query(self._model, query).tolist()

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
