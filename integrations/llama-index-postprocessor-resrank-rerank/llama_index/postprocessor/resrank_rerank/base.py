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
from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.access import ACCESS_FIELD, Principal, check_principal
from resrank_rag.adapters import (
    acollection_fingerprint,
    afetch_vectors,
    collection_fingerprint,
    fetch_vectors,
    load_model,
    made_by,
    open_cache,
    query_vector,
)
from resrank_rag.embedding_cache import EmbeddingCache

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE = "retrieval_score"


class ResRankRerank(BaseNodePostprocessor):
    """Rerank nodes with ResRank: the query text plus one reranker position per node, one forward pass.

    Each node's passage vector comes, in order of preference, from ``node.embedding``, from the Qdrant
    ``vector_store`` the nodes were retrieved from (looked up by node id), or from the core
    ``EmbeddingCache`` (encoding only texts it has never seen). The store's vectors are used only once
    they are known to be this model's encoder's: from the collection's model record, or by comparing one
    stored vector with this encoder's vector of the same text (once per collection), and only of the nodes
    ``principal`` may read there (none, from a store with access lists, without a principal: their texts
    are encoded instead). The ``QueryBundle``'s embedding is used only when it is provably this encoder's
    vector of the query (``ResRankEmbedding`` made it); another embedder's is replaced by encoding the
    query. The caller's nodes are never changed: results are new ``NodeWithScore`` objects, copies where
    metadata is added.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="ResRank model name or checkpoint folder.")
    top_n: int = Field(default=10, gt=0, description="Number of nodes to return, best first.")
    ordered: Optional[bool] = Field(
        default=None,
        description="Whether nodes arrive best first, so the learned rank prior applies; False for nodes in no "
        "particular order; None: the checkpoint's default. With a dense first stage and zero residual heads "
        "(the packaged model) the order cannot change whatever this is.",
    )
    score_threshold: Optional[float] = Field(default=None, description="Drop nodes whose rerank score is below this.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the first-stage score in node metadata as 'retrieval_score'."
    )
    use_stored_embeddings: bool = Field(
        default=True, description="Use node / query-bundle / Qdrant-stored vectors instead of encoding."
    )
    precision: Optional[str] = Field(
        default=None, description="Reranker LM precision when loading by model_name: auto (None), fp32, bf16, fp16, int8."
    )

    _model: ResRank = PrivateAttr()
    _cache: EmbeddingCache = PrivateAttr()
    _vector_store: Any = PrivateAttr()
    _principal: Optional[Principal] = PrivateAttr(default=None)
    _store_is_ours: Dict[str, bool] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        top_n: int = 10,
        model: Union[ResRank, str, None] = None,
        device: Optional[str] = None,
        *,
        model_name: str = DEFAULT_MODEL,
        ordered: Optional[bool] = None,
        precision: Optional[str] = None,
        score_threshold: Optional[float] = None,
        keep_retrieval_score: bool = False,
        use_stored_embeddings: bool = True,
        vector_store: Any = None,
        principal: Optional[Principal] = None,
        cache: Union[EmbeddingCache, str, Path, None] = None,
        **kwargs: Any,
    ) -> None:
        loaded = load_model(model_name if model is None else model, device, precision=precision)
        super().__init__(
            top_n=top_n,
            model_name=loaded.name if isinstance(model, ResRank) else str(model or model_name),
            ordered=ordered,
            score_threshold=score_threshold,
            keep_retrieval_score=keep_retrieval_score,
            use_stored_embeddings=use_stored_embeddings,
            precision=precision,
            **kwargs,
        )
        if vector_store is not None and not hasattr(vector_store, "dense_vector_name"):
            raise TypeError("vector_store must be a llama_index QdrantVectorStore (the store the nodes came from)")
        self._model = loaded
        self._cache = open_cache(loaded, cache)
        self._vector_store = vector_store
        self._principal = check_principal(principal)

    @classmethod
    def class_name(cls) -> str:
        return "ResRankRerank"

    @property
    def model(self) -> ResRank:
        return self._model

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        return self._traced(nodes, query_bundle, None)

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        """Rerank in a worker thread so the event loop keeps serving while the model runs.

        Stored vectors of nodes without an embedding are fetched through the store's async client when it
        has one (a store built with only ``aclient=`` works here).
        """
        stored = None
        store = self._vector_store
        if self.use_stored_embeddings and store is not None and async_client(store) is not None:
            missing = [n.node.node_id for n in nodes if n.node.embedding is None]
            if missing:
                fetched = await afetch_vectors(
                    async_client(store), store.collection_name, missing, store.dense_vector_name,
                    principal=self._principal, access_key=ACCESS_FIELD,
                )
                record = None
                if store.collection_name not in self._store_is_ours:
                    record = await acollection_fingerprint(async_client(store), store.collection_name)
                stored = await asyncio.to_thread(self._if_ours, nodes, fetched, record)
        return await asyncio.to_thread(self._traced, nodes, query_bundle, stored)

    def _traced(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle], stored: Optional[Dict[str, Any]]
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
            reranked = self._rerank(nodes, query_bundle, stored) if nodes else []
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _rerank(
        self, nodes: List[NodeWithScore], query_bundle: QueryBundle, stored: Optional[Dict[str, Any]]
    ) -> List[NodeWithScore]:
        if stored is None:
            stored = self._stored_vectors(nodes)
        results = self._model.rerank(
            query_bundle.query_str,
            self._passage_vectors(nodes, stored),
            top_n=self.top_n,
            query_vector=self._query_vector(query_bundle),
            ordered=self.ordered,
        )
        reranked = []
        for result in results:
            if self.score_threshold is not None and result.score < self.score_threshold:
                break  # results are sorted best first
            original = nodes[result.index]
            node = _with_retrieval_score(original) if self.keep_retrieval_score else original.node
            reranked.append(NodeWithScore(node=node, score=result.score))
        return reranked

    def _query_vector(self, query_bundle: QueryBundle) -> Optional[np.ndarray]:
        """The bundle's embedding when it is this encoder's vector of the query, else the query encoded."""
        if not self.use_stored_embeddings:
            return None  # the model encodes the query itself
        return query_vector(self._model, query_bundle.query_str, query_bundle.embedding)

    def _stored_vectors(self, nodes: List[NodeWithScore]) -> Dict[str, Any]:
        """Vectors the vector store holds for nodes without an embedding, when they are this model's."""
        store = self._vector_store
        if not self.use_stored_embeddings or store is None or sync_client(store) is None:
            return {}
        missing = [n.node.node_id for n in nodes if n.node.embedding is None]
        if not missing:
            return {}
        client = sync_client(store)
        fetched = fetch_vectors(
            client, store.collection_name, missing, store.dense_vector_name, principal=self._principal, access_key=ACCESS_FIELD
        )
        record = None
        if store.collection_name not in self._store_is_ours:
            record = collection_fingerprint(client, store.collection_name)
        return self._if_ours(nodes, fetched, record)

    def holds_model_vectors(self, nodes: List[NodeWithScore], vectors: Dict[str, Any], record: Optional[str] = None) -> bool:
        """Whether the vector store holds this encoder's vectors, judged once per collection.

        ``record`` is the collection's recorded encoder fingerprint (None: it has none); without one, the
        stored vector of one node (``vectors``: by node id) is compared with this encoder's vector of its text.
        """
        name = self._vector_store.collection_name
        if name not in self._store_is_ours:
            if record is not None:
                self._store_is_ours[name] = record == self._model.encoder_fingerprint
            else:
                sample = next((n.node for n in nodes if n.node.node_id in vectors), None)
                if sample is None:
                    return True  # nothing stored to judge by yet
                text = sample.get_content(metadata_mode=MetadataMode.EMBED)
                self._store_is_ours[name] = made_by(self._cache, text, vectors[sample.node_id])
        return self._store_is_ours[name]

    def _if_ours(self, nodes: List[NodeWithScore], fetched: Dict[str, Any], record: Optional[str]) -> Dict[str, Any]:
        """``fetched`` when the store holds this encoder's vectors, else nothing (with a warning, once)."""
        judged = self._vector_store.collection_name in self._store_is_ours
        if self.holds_model_vectors(nodes, fetched, record):
            return fetched
        if not judged:
            warnings.warn(
                f"Qdrant collection {self._vector_store.collection_name!r} holds vectors of another encoder than "
                "this ResRank model's, so ResRankRerank encodes the passages (once each, cached) and the query "
                "itself. Embed the index with ResRankEmbedding over the same model to rerank its stored vectors.",
                stacklevel=5,
            )
        return {}

    def _passage_vectors(self, nodes: List[NodeWithScore], stored: Dict[str, Any]) -> np.ndarray:
        dim = self._model.embedding_dim
        vectors: List[Optional[List[float]]] = [None] * len(nodes)
        if self.use_stored_embeddings:
            vectors = [n.node.embedding if n.node.embedding is not None else stored.get(n.node.node_id) for n in nodes]
            wrong = sum(v is not None and len(v) != dim for v in vectors)
            if wrong:
                warnings.warn(
                    f"{wrong} stored embeddings do not have this model's dimension {dim} (made by another "
                    "embedding model?); encoding those nodes with ResRank instead",
                    stacklevel=5,
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


def _with_retrieval_score(original: NodeWithScore) -> Any:
    """A copy of the node whose metadata gains the first-stage score, hidden from the embedder and the LLM."""
    node = original.node
    retrieval = None if original.score is None else float(original.score)

    def hidden(keys: List[str]) -> List[str]:
        return list(keys) if RETRIEVAL_SCORE in keys else [*keys, RETRIEVAL_SCORE]

    return node.model_copy(
        update={
            "metadata": {**node.metadata, RETRIEVAL_SCORE: retrieval},
            "excluded_embed_metadata_keys": hidden(node.excluded_embed_metadata_keys),
            "excluded_llm_metadata_keys": hidden(node.excluded_llm_metadata_keys),
        }
    )
