"""Stored ResRank vectors of documents returned by a langchain-qdrant ``QdrantVectorStore``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from langchain_core.documents import Document
from langchain_qdrant import QdrantVectorStore, RetrievalMode

from resrank_rag import ResRank


def holds_model_vectors(store: QdrantVectorStore, model: ResRank) -> bool:
    """Whether the store's dense vectors were made by ``model``'s encoder.

    Known from the store's embeddings (a ``ResRankEmbeddings``) or from the collection's model record
    (collections created by the core ``ResRankIndex`` carry one).
    """
    if store.retrieval_mode == RetrievalMode.SPARSE:
        return False
    encoder = getattr(getattr(store.embeddings, "model", None), "encoder_fingerprint", None)
    if encoder is None:
        record = store.client.get_collection(store.collection_name).config.metadata or {}
        encoder = record.get("encoder_fingerprint")
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
    name = store.vector_name
    points = store.client.retrieve(
        store.collection_name,
        ids=list(dict.fromkeys(wanted.values())),
        with_payload=False,
        with_vectors=[name] if name else True,
    )
    by_id = {str(p.id): p.vector[name] if isinstance(p.vector, dict) else p.vector for p in points}
    return {
        position: np.asarray(by_id[str(point)], dtype=np.float32)
        for position, point in wanted.items()
        if str(point) in by_id
    }
