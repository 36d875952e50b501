"""ResRankRetriever: retrieve ``k`` candidates with their stored vectors, rerank them to ``top_n``."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_qdrant import QdrantVectorStore
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_resrank._models import load_model
from langchain_resrank.compressor import ResRankCompressor
from langchain_resrank.embeddings import ResRankEmbeddings
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.index import ResRankIndex, SearchHit


class ResRankRetriever(BaseRetriever):
    """First-stage search over a ``QdrantVectorStore`` or a core ``ResRankIndex``, then one ResRank pass.

    ``k`` candidates are retrieved together with their stored vectors and reranked; the best ``top_n``
    (all ``k`` when None) are returned, each with ``relevance_score`` in its metadata. Both can be
    given per call: ``retriever.invoke(query, k=50, top_n=5)``. The model defaults to the one behind
    the index or the store's ``ResRankEmbeddings``.

    Example:
        ```python
        retriever = ResRankRetriever(vector_store=store, k=50, top_n=5)
        docs = retriever.invoke("what is residual reranking?")
        ```
    """

    vector_store: QdrantVectorStore | None = Field(default=None, exclude=True)
    index: ResRankIndex | None = Field(default=None, exclude=True)
    model: ResRank | None = Field(default=None, exclude=True)
    model_name: str = DEFAULT_MODEL
    device: str | None = None
    k: int = Field(default=10, gt=0)
    """How many first-stage candidates to rerank."""
    top_n: int | None = Field(default=None, gt=0)
    """How many reranked documents to return; None returns all ``k``."""
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra arguments of ``QdrantVectorStore.similarity_search``, e.g. ``{"filter": ...}``."""
    first_stage: Literal["dense", "hybrid"] = "dense"
    """``ResRankIndex`` first stage: dense, or dense fused with BM25."""
    cache: EmbeddingCache | None = Field(default=None, exclude=True)
    """Encodes passages the store holds no vectors of (see ``ResRankCompressor``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())
    _compressor: ResRankCompressor | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _prepare(self) -> ResRankRetriever:
        if (self.vector_store is None) == (self.index is None):
            raise ValueError(
                "pass exactly one of vector_store= (a langchain-qdrant QdrantVectorStore) or index= (a ResRankIndex)"
            )
        if self.index is not None:
            if self.model is not None and self.model is not self.index.model:
                raise ValueError("index= brings its own model; leave model= out (the index reranks with index.model)")
            self.model = self.index.model
        elif self.model is None:
            embeddings = self.vector_store.embeddings
            self.model = (
                embeddings.model
                if isinstance(embeddings, ResRankEmbeddings)
                else load_model(self.model_name, self.device)
            )
        if self.vector_store is not None:
            self._compressor = ResRankCompressor(
                model=self.model, vector_store=self.vector_store, cache=self.cache, top_n=None
            )
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, top_n: int | None = None
    ) -> list[Document]:
        k = _positive(self.k if k is None else k, "k")
        top_n = min(k, _positive((self.top_n or k) if top_n is None else top_n, "top_n"))
        if self.index is not None:
            return [_document(hit) for hit in self.index.search(query, k=k, top_n=top_n, first_stage=self.first_stage)]
        candidates = self.vector_store.similarity_search(query, k=k, **self.search_kwargs)
        return self._compressor.rerank(candidates, query, top_n)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        top_n: int | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync(), k=k, top_n=top_n
        )


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _document(hit: SearchHit) -> Document:
    metadata = {
        **hit.metadata,
        "doc_id": hit.id,
        "retrieval_score": hit.retrieval_score,
        "relevance_score": hit.rerank_score,
    }
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)
