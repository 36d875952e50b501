"""What a ResRankIndex point holds: its stable id, its payload and hashes, and the hit a search returns."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from qdrant_client import models

from resrank_rag.documents import Document

ID_NAMESPACE = uuid.UUID("6f1c2b9e-4a57-5d0e-9c1a-7e3b8f2d4c60")
"""Namespace of the uuid5 point ids: a chunk id always maps to the same point."""
DENSE = ""  # the unnamed default vector, so other Qdrant tools read the collection as a plain one
SPARSE = "bm25"
PAYLOAD_FIELDS = ("doc_id", "chunk_id", "text", "metadata", "content_hash", "text_hash", "doc_hash")


@dataclass(frozen=True)
class SearchHit:
    """One search result: first-stage score, and the ResRank score when the hit was reranked.

    ``id`` is the chunk id (the document id when it was indexed whole), ``doc_id`` the document's.
    """

    id: str
    text: str
    metadata: dict
    retrieval_score: float
    rerank_score: float | None = None
    doc_id: str | None = None


@dataclass(frozen=True)
class SyncReport:
    """What ``ResRankIndex.sync`` did: documents and chunks in the source, chunks written, points removed."""

    documents: int
    chunks: int
    written: int
    removed: int


def point_id(chunk_id: str) -> str:
    """The stable Qdrant point id (uuid5) of a chunk id (a document's own id when indexed whole)."""
    return str(uuid.uuid5(ID_NAMESPACE, chunk_id))


def content_hash(text: str, metadata: dict) -> str:
    """Hash of a document's text and metadata: equal hashes mean re-indexing can skip it."""
    canonical = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def text_hash(text: str) -> str:
    """Hash of a chunk's text alone: equal hashes mean its stored vectors still fit."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def doc_hash(chunks: Sequence[Document]) -> str:
    """Hash of a document's whole chunk list: a chunk carrying it proves its document was written completely."""
    return text_hash(json.dumps([[c.id, content_hash(c.text, c.metadata)] for c in chunks], ensure_ascii=False))


def stored_dense(vector) -> list[float]:
    """The dense vector of a point Qdrant returned (named vectors or one)."""
    return vector.get(DENSE) if isinstance(vector, dict) else vector


def hit(point, score: float) -> SearchHit:
    """The SearchHit of a returned point."""
    return SearchHit(
        id=point.payload.get("chunk_id", point.payload["doc_id"]),
        text=point.payload["text"],
        metadata=point.payload.get("metadata") or {},
        retrieval_score=score,
        doc_id=point.payload["doc_id"],
    )


def of_docs(doc_ids: Sequence[str]) -> models.Filter:
    """The points of these documents (payload ``doc_id``)."""
    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids)))])


