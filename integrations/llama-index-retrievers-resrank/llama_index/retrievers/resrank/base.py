"""ResRankRetriever: dense first stage with vectors from Qdrant or the core index, then one ResRank pass."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from llama_index.postprocessor.resrank_rerank.base import async_client, sync_client
from qdrant_client import models
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.access import ACCESS_FIELD, Principal, check_principal, combine_filters
from resrank_rag.adapters import aquery_readable, positive_int, query_readable, query_vector, search_request
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.index import check_filter


class ResRankRetriever(BaseRetriever):
    """Retrieve ``k`` candidates together with their stored vectors, rerank them to ``top_n`` in one pass.

    ``store`` is a llama_index ``QdrantVectorStore`` whose nodes were embedded by ``ResRankEmbedding``
    with the same model (its sync ``client`` or, for ``aretrieve``, its ``aclient``), or a core
    ``resrank_rag.index.ResRankIndex`` (``first_stage``: "dense" or "hybrid"). ``filters``
    (``MetadataFilters``) and ``qdrant_filters`` (a qdrant ``Filter``) restrict the first stage on both;
    given together, both apply. ``principal`` (a ``resrank_rag.access.Principal``) admits only the nodes
    whose ``allowed_groups`` hold one of its groups or ``"*"``, in Qdrant's first stage, and a store whose
    nodes carry access lists refuses a search without one; build one retriever per request for the
    authenticated user (docs/security.md). The query is encoded once (not at all when the ``QueryBundle``
    carries this encoder's embedding of it); passages are never re-encoded: the first stage returns their vectors. ``ordered``
    (default: the checkpoint's) feeds the first-stage order to the rank prior, as in ``ResRankRerank``.
    """

    def __init__(
        self,
        store: Any,
        model: Union[ResRank, str, None] = None,
        *,
        model_name: str = DEFAULT_MODEL,
        device: Optional[str] = None,
        k: int = 100,
        top_n: int = 10,
        ordered: Optional[bool] = None,
        score_threshold: Optional[float] = None,
        keep_retrieval_score: bool = False,
        filters: Optional[MetadataFilters] = None,
        qdrant_filters: Any = None,
        principal: Optional[Principal] = None,
        first_stage: str = "dense",
        cache: Union[EmbeddingCache, str, Path, None] = None,
        callback_manager: Optional[CallbackManager] = None,
        verbose: bool = False,
    ) -> None:
        core = hasattr(store, "retrieve_with_vectors")
        if not (core or hasattr(store, "dense_vector_name")):
            raise TypeError(
                f"store must be a llama_index QdrantVectorStore or a resrank_rag ResRankIndex, got {type(store).__name__}"
            )
        positive_int(k, "k (candidates to retrieve)")
        if first_stage not in ("dense", "hybrid"):
            raise ValueError(f"first_stage must be 'dense' or 'hybrid', got {first_stage!r}")
        if first_stage != "dense" and not core:
            raise ValueError(
                "first_stage='hybrid' needs a resrank_rag ResRankIndex (it stores BM25 beside the vectors); "
                "a QdrantVectorStore is searched dense"
            )
        if filters is not None and not isinstance(filters, MetadataFilters):
            raise TypeError(f"filters must be llama_index MetadataFilters, got {type(filters).__name__}")
        if qdrant_filters is not None and not isinstance(qdrant_filters, models.Filter):
            raise TypeError(f"qdrant_filters must be a qdrant_client.models.Filter, got {type(qdrant_filters).__name__}")
        store_model = getattr(store, "model", None)  # a ResRankIndex holds its model
        if model is None:
            model = store_model
        elif store_model is not None and (
            not isinstance(model, ResRank) or store_model.encoder_fingerprint != model.encoder_fingerprint
        ):
            raise ValueError("model has another encoder than the ResRankIndex; pass the index's model or none")
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self._store = store
        self._core = core
        self._k = k
        self._filter = combine_filters(_metadata_filter(store, filters, core), qdrant_filters)
        self._principal = check_principal(principal)
        if core:
            check_filter(self._filter)  # a key outside the index payload fails now, not at the first query
        self._first_stage = first_stage
        self._reranker = ResRankRerank(
            top_n=top_n,
            model=model,
            model_name=model_name,
            device=device,
            ordered=ordered,
            score_threshold=score_threshold,
            keep_retrieval_score=keep_retrieval_score,
            vector_store=None if core else store,
            principal=principal,
            cache=cache,
            callback_manager=self.callback_manager,
        )

    @property
    def reranker(self) -> ResRankRerank:
        return self._reranker

    def _query_vector(self, query_bundle: QueryBundle) -> np.ndarray:
        """The bundle's embedding when it is this encoder's vector of the query, else the query encoded."""
        return query_vector(self._reranker.model, query_bundle.query_str, query_bundle.embedding)

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        query = query_bundle.query_str
        vector = self._query_vector(query_bundle)
        candidates = self._from_core_index(query, vector) if self._core else self._from_qdrant(vector)
        return self._reranker.postprocess_nodes(candidates, QueryBundle(query_str=query, embedding=vector.tolist()))

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        query = query_bundle.query_str
        vector = await asyncio.to_thread(self._query_vector, query_bundle)
        if self._core:
            candidates = await asyncio.to_thread(self._from_core_index, query, vector)
        elif async_client(self._store) is not None:
            candidates = await self._afrom_qdrant(vector)
        else:
            candidates = await asyncio.to_thread(self._from_qdrant, vector)
        bundle = QueryBundle(query_str=query, embedding=vector.tolist())
        return await self._reranker.apostprocess_nodes(candidates, bundle)

    def _query_options(self, vector: np.ndarray) -> dict:
        store = self._store
        return search_request(store.collection_name, vector, store.dense_vector_name, self._k, query_filter=self._filter)

    def _missing(self) -> ValueError:
        return ValueError(
            f"Qdrant collection {self._store.collection_name!r} does not exist; index documents into it first "
            "(VectorStoreIndex.from_documents(..., storage_context=..., embed_model=ResRankEmbedding(...)))"
        )

    def _from_qdrant(self, vector: np.ndarray) -> List[NodeWithScore]:
        client = sync_client(self._store)
        if client is None:
            raise ValueError("this QdrantVectorStore has only an async client (aclient=); call aretrieve, or pass client=")
        if not client.collection_exists(self._store.collection_name):
            raise self._missing()
        return self._nodes(query_readable(client, self._principal, ACCESS_FIELD, self._query_options(vector)))

    async def _afrom_qdrant(self, vector: np.ndarray) -> List[NodeWithScore]:
        client = async_client(self._store)
        if not await client.collection_exists(self._store.collection_name):
            raise self._missing()
        return self._nodes(await aquery_readable(client, self._principal, ACCESS_FIELD, self._query_options(vector)))

    def _nodes(self, points: list) -> List[NodeWithScore]:
        result = self._store.parse_to_query_result(points)
        nodes = [NodeWithScore(node=node, score=float(score)) for node, score in zip(result.nodes, result.similarities)]
        stored = {n.node.node_id: n.node.embedding for n in nodes if n.node.embedding is not None}
        if not self._reranker.holds_model_vectors(nodes, stored):
            raise ValueError(
                f"Qdrant collection {self._store.collection_name!r} holds vectors of another encoder, so a search "
                "with this ResRank model's query vector means nothing there. Embed it with ResRankEmbedding over "
                "the same model, or search it with its own retriever and rerank with ResRankRerank(vector_store=...)"
            )
        return nodes

    def _from_core_index(self, query: str, vector: np.ndarray) -> List[NodeWithScore]:
        hits, vectors = self._store.retrieve_with_vectors(
            query, self._k, first_stage=self._first_stage, filter=self._filter, query_vector=vector,
            principal=self._principal,
        )
        nodes = [
            NodeWithScore(
                node=TextNode(id_=str(hit.id), text=hit.text, metadata=dict(hit.metadata), embedding=stored.tolist()),
                score=float(hit.retrieval_score),
            )
            for hit, stored in zip(hits, vectors)
        ]
        return nodes


def _metadata_filter(store: Any, filters: Optional[MetadataFilters], core: bool) -> Optional[models.Filter]:
    """``filters`` as a qdrant Filter, built by the QdrantVectorStore's own builder.

    A ResRankIndex keeps node metadata under ``metadata.`` in the payload, so its keys get that prefix.
    """
    if filters is None or not filters.filters:
        return None
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    builder = QdrantVectorStore.__new__(QdrantVectorStore) if core else store  # the builder reads no state
    built = builder._build_subfilter(filters)
    return _prefixed(built, "metadata.") if core else built


def _prefixed(condition: Any, prefix: str) -> Any:
    """A copy of a qdrant filter whose payload keys start with ``prefix``."""
    if isinstance(condition, models.Filter):
        parts = {}
        for name in ("must", "should", "must_not"):
            part = getattr(condition, name)
            if part is not None:
                parts[name] = [_prefixed(c, prefix) for c in (part if isinstance(part, list) else [part])]
        return condition.model_copy(update=parts)
    if isinstance(condition, models.FieldCondition):
        return condition.model_copy(update={"key": prefix + condition.key})
    if isinstance(condition, models.IsEmptyCondition):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=prefix + condition.is_empty.key))
    return condition
