"""ResRankRetriever: dense first stage with vectors from Qdrant or the core index, then one ResRank pass."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, List, Optional, Union

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.embedding_cache import EmbeddingCache


class ResRankRetriever(BaseRetriever):
    """Retrieve ``k`` candidates together with their stored vectors, rerank them to ``top_n`` in one pass.

    ``store`` is a llama_index ``QdrantVectorStore`` whose nodes were embedded by ``ResRankEmbedding``
    with the same model (``qdrant_filters``: an optional qdrant ``Filter``), or a core
    ``resrank_rag.index.ResRankIndex`` (``first_stage``: "dense" or "hybrid"). Passages are never
    re-encoded: the first stage returns their vectors and the reranker reads them.
    """

    def __init__(
        self,
        store: Any,
        model: Optional[ResRank] = None,
        *,
        model_name: str = DEFAULT_MODEL,
        device: Optional[str] = None,
        k: int = 100,
        top_n: int = 10,
        score_threshold: Optional[float] = None,
        keep_retrieval_score: bool = False,
        qdrant_filters: Any = None,
        first_stage: str = "dense",
        cache: Union[EmbeddingCache, str, Path, None] = None,
        callback_manager: Optional[CallbackManager] = None,
        verbose: bool = False,
    ) -> None:
        if not (hasattr(store, "dense_vector_name") or hasattr(store, "retrieve_with_vectors")):
            raise TypeError(
                f"store must be a llama_index QdrantVectorStore or a resrank_rag ResRankIndex, got {type(store).__name__}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k (candidates to retrieve) must be a positive integer, got {k!r}")
        store_model = getattr(store, "model", None)  # a ResRankIndex holds its model
        if model is None:
            model = store_model
        elif store_model is not None and store_model.encoder_fingerprint != model.encoder_fingerprint:
            raise ValueError("model has another encoder than the ResRankIndex; pass the index's model or none")
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self._store = store
        self._k = k
        self._qdrant_filters = qdrant_filters
        self._first_stage = first_stage
        self._reranker = ResRankRerank(
            top_n=top_n,
            model=model,
            model_name=model_name,
            device=device,
            score_threshold=score_threshold,
            keep_retrieval_score=keep_retrieval_score,
            vector_store=store if hasattr(store, "dense_vector_name") else None,
            cache=cache,
            callback_manager=self.callback_manager,
        )

    @property
    def reranker(self) -> ResRankRerank:
        return self._reranker

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        model = self._reranker.model
        query_vector = model.encode_query(query_bundle.query_str)
        if hasattr(self._store, "retrieve_with_vectors"):
            candidates = self._from_core_index(query_bundle.query_str)
        else:
            candidates = self._from_qdrant(query_vector.tolist())
        rerank_query = QueryBundle(query_str=query_bundle.query_str, embedding=query_vector.tolist())
        return self._reranker.postprocess_nodes(candidates, rerank_query)

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _from_qdrant(self, query_vector: List[float]) -> List[NodeWithScore]:
        store = self._store
        if not store.client.collection_exists(store.collection_name):
            raise ValueError(
                f"Qdrant collection {store.collection_name!r} does not exist; index documents into it first "
                "(VectorStoreIndex.from_documents(..., storage_context=..., embed_model=ResRankEmbedding(...)))"
            )
        name = store.dense_vector_name
        response = store.client.query_points(
            collection_name=store.collection_name,
            query=query_vector,
            using=name or None,
            limit=self._k,
            query_filter=self._qdrant_filters,
            with_payload=True,
            with_vectors=[name] if name else True,
        )
        result = store.parse_to_query_result(response.points)
        return [NodeWithScore(node=node, score=float(score)) for node, score in zip(result.nodes, result.similarities)]

    def _from_core_index(self, query: str) -> List[NodeWithScore]:
        hits, vectors = self._store.retrieve_with_vectors(query, self._k, first_stage=self._first_stage)
        return [
            NodeWithScore(
                node=TextNode(id_=str(hit.id), text=hit.text, metadata=dict(hit.metadata), embedding=vector.tolist()),
                score=float(hit.retrieval_score),
            )
            for hit, vector in zip(hits, vectors)
        ]
