"""Stored ResRank vectors of documents returned by a langchain-qdrant ``QdrantVectorStore``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from langchain_core.documents import Document
from langchain_qdrant import QdrantVectorStore, RetrievalMode
from qdrant_client import models

from resrank_rag import ResRank
from resrank_rag.adapters import collection_fingerprint, fetch_vectors, point_vector, search_request


def holds_model_vectors(store: QdrantVectorStore, model: ResRank) -> bool:
    """Whether the store's dense vectors were made by ``model``'s encoder.

    Known from the store's embeddings (a ``ResRankEmbeddings``) or from the collection's model record
    (collections created by the core ``ResRankIndex`` carry one).
    """
    if store.retrieval_mode == RetrievalMode.SPARSE:
        return False
    encoder = getattr(getattr(store.embeddings, "model", None), "encoder_fingerprint", None)
    if encoder is None:
        encoder = collection_fingerprint(store.client, store.collection_name)
    return encoder == model.encoder_fingerprint


def stored_vectors(store: QdrantVectorStore, documents: Sequence[Document]) -> dict[int, np.ndarray]:
    """Vectors of the documents that came from ``store`` (they carry ``_id`` and ``_collection_name``
    metadata), fetched in one request, keyed by position in ``documents``."""
    wanted = {
        position: document.metadata["_id"]
        for position, document in enumerate(documents)
        if document.metadata.get("_collection_name") == store.collection_name and "_id" in document.metadata
    }
    if not wanted:
        return {}
    by_id = fetch_vectors(store.client, store.collection_name, list(wanted.values()), store.vector_name)
    return {
        position: np.asarray(by_id[str(point)], dtype=np.float32)
        for position, point in wanted.items()
        if str(point) in by_id
    }


def search_with_vectors(
    store: QdrantVectorStore, query_vector: np.ndarray, k: int, **options
) -> tuple[list[Document], np.ndarray]:
    """The store's dense top ``k`` for ``query_vector`` with their stored vectors, in one Qdrant call.

    ``options`` are ``query_points`` arguments (``query_filter``, ``search_params``, ``score_threshold``,
    ``consistency``). Documents are built as ``QdrantVectorStore`` builds them (``_id``, ``_collection_name``).
    """
    name = store.vector_name
    points = store.client.query_points(**search_request(store.collection_name, query_vector, name, k, **options)).points
    documents = []
    for point in points:
        metadata = dict(point.payload.get(store.metadata_payload_key) or {})
        metadata.update(_id=point.id, _collection_name=store.collection_name)
        documents.append(Document(page_content=point.payload.get(store.content_payload_key, ""), metadata=metadata))
    vectors = [point_vector(point, name) for point in points]
    return documents, np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, 0), dtype=np.float32)


def check_filter(value) -> models.Filter | None:
    """A qdrant ``Filter`` (or None) as ``search_kwargs["filter"]``; anything else is refused."""
    if value is not None and not isinstance(value, models.Filter):
        raise TypeError(
            f"search_kwargs['filter'] must be a qdrant_client.models.Filter, got {type(value).__name__}; e.g. "
            "models.Filter(must=[models.FieldCondition(key='metadata.source', match=models.MatchValue(value='a'))])"
        )
    return value
