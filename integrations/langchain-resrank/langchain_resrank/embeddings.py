"""ResRankEmbeddings: the ResRank encoder as a LangChain ``Embeddings``."""

from __future__ import annotations

import asyncio

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_resrank._models import check_cache, load_model
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.embedding_cache import EmbeddingCache


class ResRankEmbeddings(BaseModel, Embeddings):
    """Passage and query vectors from a ResRank encoder (plain Python floats, L2-normalised).

    The vectors a vector store holds are the ones ``ResRankCompressor`` and ``ResRankRetriever``
    rerank directly, so passages are never encoded twice. Pass ``model`` (a loaded ``ResRank``) or
    ``model_name`` (a packaged name, a checkpoint folder or a hub id). With ``cache`` (an
    ``EmbeddingCache``) ``embed_documents`` encodes only texts it has not seen.

    Example:
        ```python
        from langchain_qdrant import QdrantVectorStore
        from langchain_resrank import ResRankEmbeddings

        store = QdrantVectorStore.from_texts(texts, ResRankEmbeddings(), location=":memory:", collection_name="docs")
        ```
    """

    model: ResRank | str | None = Field(default=None, exclude=True)
    """A loaded ``ResRank``, or a model name / checkpoint folder to load (as ``model_name``)."""
    model_name: str = DEFAULT_MODEL
    device: str | None = None
    batch_size: int = Field(default=32, gt=0)
    show_progress_bar: bool = False
    cache: EmbeddingCache | None = Field(default=None, exclude=True)

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    @model_validator(mode="after")
    def _load_model(self) -> ResRankEmbeddings:
        if not isinstance(self.model, ResRank):
            self.model_name = str(self.model or self.model_name)
            self.model = load_model(self.model_name, self.device)
        elif self.device is not None:
            load_model(self.model, self.device)  # raises: device applies only when loading by name
        check_cache(self.cache, self.model)
        return self

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, the passage vectors a vector store should hold."""
        encode = self.model.encode if self.cache is None else self.cache.encode
        return encode(texts, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.model.encode_query(text).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
