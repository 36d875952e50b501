"""Stored ResRank vectors of documents returned by a langchain-qdrant ``QdrantVectorStore``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from langchain_core.documents import Document
from langchain_qdrant import QdrantVectorStore, RetrievalMode

from resrank_rag import ResRank
from resrank_rag.access import ACCESS_FIELD, Principal
from resrank_rag.adapters import collection_fingerprint, fetch_vectors, point_vector, query_readable, search_request


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


def access_key(store: QdrantVectorStore) -> str:
    """Where the store's points hold their access list (beside the rest of the document metadata)."""
    return f"{store.metadata_payload_key}.{ACCESS_FIELD}"


def stored_vectors(
    store: QdrantVectorStore, documents: Sequence[Document], principal: Principal | None = None
) -> dict[int, np.ndarray]:
    """Vectors of the documents that came from ``store`` (they carry ``_id`` and ``_collection_name``
    metadata) and that ``principal`` may read there, fetched in one request, keyed by position in ``documents``."""
    wanted = {
        position: document.metadata["_id"]
        for position, document in enumerate(documents)
        if document.metadata.get("_collection_name") == store.collection_name and "_id" in document.metadata
    }
    if not wanted:
        return {}
    by_id = fetch_vectors(
        store.client, store.collection_name, list(wanted.values()), store.vector_name, principal=principal,
        access_key=access_key(store),
    )
    return {
        position: np.asarray(by_id[str(point)], dtype=np.float32)
        for position, point in wanted.items()
        if str(point) in by_id
    }


def search_with_vectors(
    store: QdrantVectorStore, query_vector: np.ndarray, k: int, principal: Principal | None = None, **options
) -> tuple[list[Document], np.ndarray]:
    """The store's dense top ``k`` for ``query_vector`` among what ``principal`` may read, with their stored
    vectors, in one Qdrant call.

    ``options`` are ``query_points`` arguments (``query_filter``, ``search_params``, ``score_threshold``,
    ``consistency``). Documents are built as ``QdrantVectorStore`` builds them (``_id``, ``_collection_name``).
    """
    name = store.vector_name
    request = search_request(store.collection_name, query_vector, name, k, **options)
    points = query_readable(store.client, principal, access_key(store), request)
    documents = []
    for point in points:
        metadata = dict(point.payload.get(store.metadata_payload_key) or {})
        metadata.update(_id=point.id, _collection_name=store.collection_name)
        documents.append(Document(page_content=point.payload.get(store.content_payload_key, ""), metadata=metadata))
    vectors = [point_vector(point, name) for point in points]
    return documents, np.asarray(vectors, dtype=np.float32) if vectors else np.zeros((0, 0), dtype=np.float32)
