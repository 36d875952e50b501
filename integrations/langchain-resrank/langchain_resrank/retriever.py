"""ResRankRetriever: retrieve ``k`` candidates with their stored vectors, rerank them to ``top_n``."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_qdrant import QdrantVectorStore, RetrievalMode
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_resrank._models import load_model
from langchain_resrank._qdrant import access_key, holds_model_vectors, search_with_vectors
from langchain_resrank.compressor import ResRankCompressor
from langchain_resrank.embeddings import ResRankEmbeddings
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.access import Principal, check_points, check_principal, store_read_filter
from resrank_rag.adapters import positive_int as _positive
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.index import PAYLOAD_FIELDS, ResRankIndex, SearchHit, check_filter

STORE_SEARCH_KWARGS = {"k", "filter", "search_params", "score_threshold", "consistency"}
"""``search_kwargs`` a ``QdrantVectorStore`` first stage understands (as in ``similarity_search``)."""
INDEX_SEARCH_KWARGS = {"k", "filter"}


class ResRankRetriever(BaseRetriever):
    """First-stage search over a ``QdrantVectorStore`` or a core ``ResRankIndex``, then one ResRank pass.

    ``k`` candidates are retrieved together with their stored vectors and reranked; the best ``top_n``
    (all ``k`` when None) are returned, each with ``relevance_score`` in its metadata. Both can be
    given per call: ``retriever.invoke(query, k=50, top_n=5)``. The model defaults to the one behind
    the index or the store's ``ResRankEmbeddings``. ``search_kwargs`` takes ``filter`` (a qdrant
    ``Filter``) and ``k`` on both sources; a key that cannot apply is refused. The query is encoded once,
    and one Qdrant call returns the candidates with their vectors (for a dense store of this model's vectors).
    ``principal`` (a ``resrank_rag.access.Principal``, also per call: ``invoke(query, principal=user)``)
    admits only documents whose ``metadata.allowed_groups`` hold one of its groups or ``"*"``, as a Qdrant
    filter of the first stage on every source, and a source holding access lists refuses a search without
    one (docs/security.md).

    Example:
        ```python
        retriever = ResRankRetriever(vector_store=store, k=50, top_n=5)
        docs = retriever.invoke("what is residual reranking?")
        ```
    """

    vector_store: QdrantVectorStore | None = Field(default=None, exclude=True)
    index: ResRankIndex | None = Field(default=None, exclude=True)
    model: ResRank | str | None = Field(default=None, exclude=True)
    """A loaded ``ResRank`` or a name to load; default: the index's, or the store's ``ResRankEmbeddings``'."""
    model_name: str = DEFAULT_MODEL
    device: str | None = None
    k: int = Field(default=10, gt=0)
    """How many first-stage candidates to rerank."""
    top_n: int | None = Field(default=None, gt=0)
    """How many reranked documents to return; None returns all ``k``."""
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    """First-stage arguments: ``filter`` and ``k``; with a vector store also ``search_params``,
    ``score_threshold`` and ``consistency`` (as in ``QdrantVectorStore.similarity_search``)."""
    first_stage: Literal["dense", "hybrid"] = "dense"
    """``ResRankIndex`` first stage: dense, or dense fused with BM25."""
    ordered: bool | None = None
    """Whether the first-stage order feeds the learned rank prior (see ``ResRankCompressor.ordered``)."""
    cache: EmbeddingCache | None = Field(default=None, exclude=True)
    """Encodes passages the store holds no vectors of (see ``ResRankCompressor``)."""
    principal: Principal | None = Field(default=None, exclude=True)
    """Whose access the first stage applies by default (a call's ``principal=`` replaces it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())
    _compressor: ResRankCompressor | None = PrivateAttr(default=None)
    _direct: bool = PrivateAttr(default=False)

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
        elif isinstance(self.model, ResRank):
            load_model(self.model, self.device)  # device applies only when loading by name
        elif self.model is None and isinstance(self.vector_store.embeddings, ResRankEmbeddings):
            self.model = self.vector_store.embeddings.model
        else:
            self.model_name = str(self.model or self.model_name)
            self.model = load_model(self.model_name, self.device)
        allowed = INDEX_SEARCH_KWARGS if self.index is not None else STORE_SEARCH_KWARGS
        unknown = sorted(set(self.search_kwargs) - allowed)
        if unknown:
            source = "index=" if self.index is not None else "vector_store="
            raise ValueError(f"search_kwargs {unknown} cannot apply with {source}; it takes {sorted(allowed)}")
        # A key outside a ResRankIndex payload fails now, not at the first query; any key can apply to a store.
        check_filter(self.search_kwargs.get("filter"), PAYLOAD_FIELDS if self.index is not None else None)
        check_principal(self.principal)
        if "k" in self.search_kwargs:
            k = _positive(self.search_kwargs["k"], "search_kwargs['k']")
            if "k" in self.model_fields_set and k != self.k:
                raise ValueError(f"k={self.k} and search_kwargs['k']={k} disagree; give one")
            self.k = k
        if self.vector_store is not None:
            self._compressor = ResRankCompressor(
                model=self.model, vector_store=self.vector_store, cache=self.cache, top_n=None, ordered=self.ordered
            )
            self._direct = self.vector_store.retrieval_mode == RetrievalMode.DENSE and holds_model_vectors(
                self.vector_store, self.model
            )
        return self

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        top_n: int | None = None,
        principal: Principal | None = None,
    ) -> list[Document]:
        k = _positive(self.k if k is None else k, "k")
        top_n = min(k, _positive((self.top_n or k) if top_n is None else top_n, "top_n"))
        principal = check_principal(principal) or self.principal
        options = {key: value for key, value in self.search_kwargs.items() if key != "k"}
        if self.index is not None:  # the index applies the principal (and refuses a search without one it needs)
            hits = self.index.search(
                query, k=k, top_n=top_n, first_stage=self.first_stage, filter=options.get("filter"), principal=principal,
                ordered=self.ordered,
            )
            return [_document(hit) for hit in hits]
        store = self.vector_store
        if not self._direct:  # another embedding model, or a sparse/hybrid store: its own search, then rerank
            options["filter"] = store_read_filter(
                store.client, store.collection_name, principal, options.get("filter"), key=access_key(store)
            )
            candidates = store.similarity_search(query, k=k, **options)
            payloads = ({store.metadata_payload_key: d.metadata} for d in candidates)
            check_points(principal, payloads, access_key(store), store.collection_name)
            return self._compressor.rerank(candidates, query, top_n, principal=principal)
        query_vector = self.model.encode_query(query)
        options["query_filter"] = options.pop("filter", None)
        candidates, vectors = search_with_vectors(store, query_vector, k, principal, **options)
        return self._compressor.rerank(candidates, query, top_n, vectors=vectors, query_vector=query_vector)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        top_n: int | None = None,
        principal: Principal | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync(), k=k, top_n=top_n,
            principal=principal,
        )


def _document(hit: SearchHit) -> Document:
    metadata = {
        **hit.metadata,
        "doc_id": hit.doc_id,
        "retrieval_score": hit.retrieval_score,
        "relevance_score": hit.rerank_score,
    }
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)
