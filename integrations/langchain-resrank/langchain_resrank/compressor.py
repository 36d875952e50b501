"""ResRankCompressor: one-pass listwise reranking of LangChain documents."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence

import numpy as np
from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_qdrant import QdrantVectorStore
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_resrank._models import check_cache, load_model
from langchain_resrank._qdrant import holds_model_vectors, stored_vectors
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.access import Principal, check_principal
from resrank_rag.embedding_cache import EmbeddingCache


class ResRankCompressor(BaseDocumentCompressor):
    """Reranks documents with ResRank in one forward pass and keeps the best ``top_n``.

    Each returned document is a copy whose metadata gains ``relevance_score`` (a float cosine score);
    the caller's documents are never changed. Passage vectors come from ``vector_store`` when the
    documents came from it, it holds this model's vectors and ``principal`` may read them there (no
    encoding at all; a store with access lists gives none without a principal), otherwise from ``cache``
    (an ``EmbeddingCache``; default: the user cache folder), which encodes each text once.

    Example:
        ```python
        from langchain_classic.retrievers import ContextualCompressionRetriever

        compressor = ResRankCompressor(vector_store=store, top_n=5)
        retriever = ContextualCompressionRetriever(
            base_compressor=compressor, base_retriever=store.as_retriever(search_kwargs={"k": 50})
        )
        ```
    """

    model: ResRank | str | None = Field(default=None, exclude=True)
    """A loaded ``ResRank``, or a model name / checkpoint folder to load (as ``model_name``)."""
    model_name: str = DEFAULT_MODEL
    device: str | None = None
    precision: str | None = None
    """Reranker LM precision when loading by ``model_name``: auto (None), fp32, bf16, fp16 (CUDA), int8 (CPU)."""
    top_n: int | None = Field(default=3, gt=0)
    """How many documents to keep; None keeps all, reordered."""
    score_threshold: float | None = None
    """Drop documents scoring below this cosine score."""
    ordered: bool | None = None
    """Whether documents arrive best first, so the learned rank prior applies; False for documents in no
    particular order; None: the checkpoint's default. With a dense first stage and zero residual heads (the
    packaged model) the order cannot change whatever this is."""
    vector_store: QdrantVectorStore | None = Field(default=None, exclude=True)
    """The store the documents came from, to reuse its vectors instead of encoding passages."""
    cache: EmbeddingCache | None = Field(default=None, exclude=True)
    principal: Principal | None = Field(default=None, exclude=True)
    """Whose access the stored vectors are read with (``rerank(..., principal=)`` replaces it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())
    _use_store: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _prepare(self) -> ResRankCompressor:
        if not isinstance(self.model, ResRank):
            self.model_name = str(self.model or self.model_name)
            self.model = load_model(self.model_name, self.device, self.precision)
        elif self.device is not None:
            load_model(self.model, self.device)  # raises: device applies only when loading by name
        elif self.precision is not None:
            raise ValueError("precision only applies when loading by model_name; load the model with ResRank.from_pretrained(..., precision=)")
        check_cache(self.cache, self.model)
        check_principal(self.principal)
        if self.cache is None:
            self.cache = EmbeddingCache(self.model)
        if self.vector_store is not None:
            self._use_store = holds_model_vectors(self.vector_store, self.model)
            if not self._use_store:
                warnings.warn(
                    f"Qdrant collection {self.vector_store.collection_name!r} does not hold vectors of this ResRank "
                    "encoder, so ResRankCompressor encodes passages itself (once each, cached). Build the store "
                    "with ResRankEmbeddings over the same model to rerank its stored vectors directly.",
                    stacklevel=2,
                )
        return self

    def rerank(
        self,
        documents: Sequence[Document],
        query: str,
        top_n: int | None = None,
        *,
        vectors: np.ndarray | None = None,
        query_vector: np.ndarray | None = None,
        principal: Principal | None = None,
    ) -> list[Document]:
        """All ``documents`` (or the best ``top_n``) best first, as scored copies above ``score_threshold``.

        ``vectors`` (one per document) and ``query_vector`` skip fetching and encoding when the caller has them;
        ``principal`` (default: the compressor's) reads the stored ones.
        """
        documents = list(documents)
        if not documents:
            return []
        results = self.model.rerank(
            query,
            [d.page_content for d in documents],
            top_n=top_n,
            vectors=self._vectors(documents, check_principal(principal) or self.principal) if vectors is None else vectors,
            query_vector=query_vector,
            ordered=self.ordered,
        )
        return [
            documents[r.index].model_copy(
                update={"metadata": {**documents[r.index].metadata, "relevance_score": r.score}}
            )
            for r in results
            if self.score_threshold is None or r.score >= self.score_threshold
        ]

    def _vectors(self, documents: list[Document], principal: Principal | None) -> np.ndarray:
        found = stored_vectors(self.vector_store, documents, principal) if self._use_store else {}
        missing = [i for i in range(len(documents)) if i not in found]
        if missing:
            found.update(zip(missing, self.cache.encode([documents[i].page_content for i in missing]), strict=True))
        return np.stack([found[i] for i in range(len(documents))])

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The best ``top_n`` documents for ``query``, best first, each with ``relevance_score`` metadata."""
        return self.rerank(documents, query, self.top_n)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """``compress_documents`` in a worker thread, so the event loop stays free during the forward pass."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
