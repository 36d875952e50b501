"""ResRankRerank: one-pass listwise reranking of retrieved nodes from their stored vectors."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.embeddings.resrank.base import load_model, open_cache
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.embedding_cache import EmbeddingCache

dispatcher = get_dispatcher(__name__)


class ResRankRerank(BaseNodePostprocessor):
    """Rerank nodes with ResRank: the query text plus one reranker position per node, one forward pass.

    Each node's passage vector comes, in order of preference, from ``node.embedding``, from the Qdrant
    ``vector_store`` the nodes were retrieved from (looked up by node id), or from the core
    ``EmbeddingCache`` (encoding only texts it has never seen). Stored vectors are trusted to come from
    this model's encoder (e.g. written by ``ResRankEmbedding`` with the same model); set
    ``use_stored_embeddings=False`` when the index was embedded by another model.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="ResRank model name or checkpoint folder.")
    top_n: int = Field(default=10, gt=0, description="Number of nodes to return, best first.")
    score_threshold: Optional[float] = Field(default=None, description="Drop nodes whose rerank score is below this.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the first-stage score in node metadata as 'retrieval_score'."
    )
    use_stored_embeddings: bool = Field(
        default=True, description="Use node / query-bundle / Qdrant-stored vectors instead of encoding."
    )

    _model: ResRank = PrivateAttr()
    _cache: EmbeddingCache = PrivateAttr()
    _vector_store: Any = PrivateAttr()

    def __init__(
        self,
        top_n: int = 10,
        model_name: str = DEFAULT_MODEL,
        model: Optional[ResRank] = None,
        device: Optional[str] = None,
        score_threshold: Optional[float] = None,
        keep_retrieval_score: bool = False,
        use_stored_embeddings: bool = True,
        vector_store: Any = None,
        cache: Union[EmbeddingCache, str, Path, None] = None,
        **kwargs: Any,
    ) -> None:
        loaded = load_model(model, model_name, device)
        super().__init__(
            top_n=top_n,
            model_name=loaded.name if model is not None else model_name,
            score_threshold=score_threshold,
            keep_retrieval_score=keep_retrieval_score,
            use_stored_embeddings=use_stored_embeddings,
            **kwargs,
        )
        if vector_store is not None and not hasattr(vector_store, "dense_vector_name"):
            raise TypeError("vector_store must be a llama_index QdrantVectorStore (the store the nodes came from)")
        self._model = loaded
        self._cache = open_cache(loaded, cache)
        self._vector_store = vector_store

    @classmethod
    def class_name(cls) -> str:
        return "ResRankRerank"

    @property
    def model(self) -> ResRank:
        return self._model

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("ResRankRerank needs the query: call postprocess_nodes(nodes, query_str=...)")
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model_name)
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model_name,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            reranked = self._rerank(nodes, query_bundle) if nodes else []
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        """Rerank in a worker thread so the event loop keeps serving while the model runs.

        Stored vectors of nodes without an embedding are fetched through the store's async client when it
        has one (a store built with only ``aclient=`` works here).
        """
        store = self._vector_store
        if self.use_stored_embeddings and store is not None and async_client(store) is not None:
            missing = [n.node.node_id for n in nodes if n.node.embedding is None]
            if missing:
                stored = await _astored_vectors(store, missing)
                nodes = [_with_embedding(n, stored.get(n.node.node_id)) for n in nodes]
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)

    def _rerank(self, nodes: List[NodeWithScore], query_bundle: QueryBundle) -> List[NodeWithScore]:
        results = self._model.rerank(
            query_bundle.query_str,
            self._passage_vectors(nodes),
            top_n=self.top_n,
            query_vector=self._query_vector(query_bundle),
        )
        reranked = []
        for result in results:
            if self.score_threshold is not None and result.score < self.score_threshold:
                break  # results are sorted best first
            original = nodes[result.index]
            if self.keep_retrieval_score:
                retrieval = original.score
                original.node.metadata["retrieval_score"] = None if retrieval is None else float(retrieval)
            reranked.append(NodeWithScore(node=original.node, score=result.score))
        return reranked

    def _query_vector(self, query_bundle: QueryBundle) -> Optional[np.ndarray]:
        embedding = query_bundle.embedding
        if self.use_stored_embeddings and embedding is not None and len(embedding) == self._model.embedding_dim:
            return np.asarray(embedding, dtype=np.float32)
        return None  # the model encodes the query itself

    def _passage_vectors(self, nodes: List[NodeWithScore]) -> np.ndarray:
        dim = self._model.embedding_dim
        vectors: List[Optional[List[float]]] = [None] * len(nodes)
        if self.use_stored_embeddings:
            vectors = [n.node.embedding for n in nodes]
            if self._vector_store is not None and None in vectors and sync_client(self._vector_store) is not None:
                stored = _stored_vectors(self._vector_store, [n.node.node_id for n, v in zip(nodes, vectors) if v is None])
                vectors = [stored.get(n.node.node_id) if v is None else v for n, v in zip(nodes, vectors)]
            wrong = sum(v is not None and len(v) != dim for v in vectors)
            if wrong:
                warnings.warn(
                    f"{wrong} stored embeddings do not have this model's dimension {dim} (made by another "
                    "embedding model?); encoding those nodes with ResRank instead",
                    stacklevel=4,
                )
        missing = [i for i, v in enumerate(vectors) if v is None or len(v) != dim]
        if missing:
            texts = [nodes[i].node.get_content(metadata_mode=MetadataMode.EMBED) for i in missing]
            for i, vector in zip(missing, self._cache.encode(texts)):
                vectors[i] = vector
        return np.asarray(vectors, dtype=np.float32)


def sync_client(vector_store: Any) -> Any:
    """The QdrantVectorStore's sync client, None when it was built with only ``aclient=``."""
    return vector_store.client


def async_client(vector_store: Any) -> Any:
    """The QdrantVectorStore's async client, None when it has none."""
    return getattr(vector_store, "_aclient", None)


def _with_embedding(node: NodeWithScore, vector: Optional[List[float]]) -> NodeWithScore:
    if vector is None:
        return node
    copy = node.node.model_copy()
    copy.embedding = list(vector)
    return NodeWithScore(node=copy, score=node.score)


def _retrieve_options(vector_store: Any, node_ids: List[str]) -> Dict[str, Any]:
    name = vector_store.dense_vector_name
    return dict(
        collection_name=vector_store.collection_name,
        ids=node_ids,
        with_payload=False,
        with_vectors=[name] if name else True,
    )


def _stored_vectors(vector_store: Any, node_ids: List[str]) -> Dict[str, List[float]]:
    """Dense vectors that a QdrantVectorStore holds for these node ids (its point ids)."""
    return _vectors_by_id(vector_store, sync_client(vector_store).retrieve(**_retrieve_options(vector_store, node_ids)))


async def _astored_vectors(vector_store: Any, node_ids: List[str]) -> Dict[str, List[float]]:
    """``_stored_vectors`` through the store's async client."""
    points = await async_client(vector_store).retrieve(**_retrieve_options(vector_store, node_ids))
    return _vectors_by_id(vector_store, points)


def _vectors_by_id(vector_store: Any, points: List[Any]) -> Dict[str, List[float]]:
    name = vector_store.dense_vector_name
    found = {}
    for point in points:
        vector = point.vector.get(name) if isinstance(point.vector, dict) else point.vector
        if vector is not None:
            found[str(point.id)] = vector
    return found
