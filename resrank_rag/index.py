"""ResRankIndex: a Qdrant collection of ResRank passage vectors, searched then reranked in one pass.

The vector Qdrant stores for retrieval is the passage's one-token representation for reranking, so
``search`` reranks the retrieved vectors directly: no passage is encoded at query time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

DEFAULT_PATH = "./.resrank/qdrant"
ID_NAMESPACE = uuid.UUID("6f1c2b9e-4a57-5d0e-9c1a-7e3b8f2d4c60")
"""Namespace of the uuid5 point ids: a document id always maps to the same point."""
RRF_CONSTANT = 60
FirstStage = Literal["dense", "hybrid"]


@dataclass(frozen=True)
class Document:
    """A passage to index: a caller-chosen unique id, its text, and JSON-serialisable metadata."""

    id: str
    text: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """One search result: first-stage score, and the ResRank score when the hit was reranked."""

    id: str
    text: str
    metadata: dict
    retrieval_score: float
    rerank_score: float | None = None


class ModelMismatchError(ValueError):
    """The collection holds vectors from another encoder than the model it was opened with."""


def point_id(document_id: str) -> str:
    """The stable Qdrant point id (uuid5) of a document id."""
    return str(uuid.uuid5(ID_NAMESPACE, document_id))


def content_hash(text: str, metadata: dict) -> str:
    """Hash of a document's text and metadata: equal hashes mean re-indexing can skip it."""
    canonical = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class ResRankIndex:
    """Documents in a Qdrant collection (cosine, one ResRank encoder vector each), searchable with rerank.

    ``path`` is an embedded Qdrant folder (default ``./.resrank/qdrant``; ``":memory:"`` for tests);
    ``url`` (and ``api_key``) a Qdrant server instead. ``embedding_cache`` (an ``EmbeddingCache``)
    makes indexing reuse vectors encoded before, e.g. by an evaluation run.
    """

    def __init__(
        self,
        model,
        collection: str,
        path: str | None = None,
        url: str | None = None,
        api_key: str | None = None,
        *,
        embedding_cache=None,
    ):
        if not collection or not isinstance(collection, str):
            raise ValueError("collection must be a non-empty string, e.g. 'docs'")
        if url is not None and path is not None:
            raise ValueError("pass either path= (embedded Qdrant) or url= (Qdrant server), not both")
        self.model = model
        self.collection = collection
        self.embedding_cache = embedding_cache
        if url is not None:
            self.client = QdrantClient(url=url, api_key=api_key)
        elif path == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            folder = Path(path or DEFAULT_PATH).expanduser()
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self.client = QdrantClient(path=str(folder))
            except RuntimeError as error:
                raise RuntimeError(
                    f"{error} Close the other ResRankIndex on {folder} (index.client.close()), or run a "
                    "Qdrant server and pass url= (see docs/qdrant.md)."
                ) from None
        self._bm25 = None  # (point count it was built at, retriever, stemmer, point ids), built on demand
        if self.client.collection_exists(collection):
            self._check_model()

    # ---------------------------------------------------------------- collection and model record
    def _model_record(self) -> dict:
        return {
            "resrank_model": self.model.name,
            "encoder_fingerprint": self.model.encoder_fingerprint,
            "vector_size": int(self.model.embedding_dim),
        }

    def _check_model(self) -> None:
        info = self.client.get_collection(self.collection)
        recorded = info.config.metadata or {}
        if "encoder_fingerprint" not in recorded:
            raise ModelMismatchError(
                f"Qdrant collection {self.collection!r} was not created by ResRankIndex (no model record); "
                "index into a new collection name"
            )
        expected = self._model_record()
        if (recorded["encoder_fingerprint"], recorded.get("vector_size")) != (
            expected["encoder_fingerprint"],
            expected["vector_size"],
        ):
            raise ModelMismatchError(
                f"Qdrant collection {self.collection!r} holds vectors of model {recorded.get('resrank_model')!r} "
                f"(encoder {recorded['encoder_fingerprint']}, {recorded.get('vector_size')} dims) but was opened "
                f"with {expected['resrank_model']!r} (encoder {expected['encoder_fingerprint']}, "
                f"{expected['vector_size']} dims). Open it with the model that built it, or index into a new "
                "collection name."
            )

    def _ensure_collection(self) -> None:
        if self.client.collection_exists(self.collection):
            return
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=int(self.model.embedding_dim), distance=models.Distance.COSINE),
            metadata=self._model_record(),
        )

    def _require_collection(self) -> None:
        if not self.client.collection_exists(self.collection):
            raise ValueError(
                f"Qdrant collection {self.collection!r} does not exist yet; index documents first "
                f"(ResRankIndex.index or `resrank index PATH --collection {self.collection}`)"
            )

    def count(self) -> int:
        """Number of indexed documents (0 before the first ``index``)."""
        if not self.client.collection_exists(self.collection):
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    # ---------------------------------------------------------------- indexing
    def index(self, documents: Iterable[Document], batch_size: int = 64, show_progress_bar: bool | None = None) -> int:
        """Encode and upsert documents batch by batch; returns how many were encoded or updated.

        Idempotent: a document id maps to one point (uuid5), unchanged documents are skipped without
        encoding, and a document whose metadata alone changed keeps its stored vector. Each batch is
        upserted before the next is encoded, so an interrupted run loses at most one batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        documents = list(documents)
        seen: set[str] = set()
        for position, document in enumerate(documents):
            if not isinstance(document, Document):
                raise TypeError(
                    f"documents[{position}] is {type(document).__name__}; wrap it as Document(id, text, metadata)"
                )
            if document.id in seen:
                raise ValueError(f"document id {document.id!r} appears twice; ids must be unique")
            seen.add(document.id)
        self._ensure_collection()
        if show_progress_bar is None:
            show_progress_bar = len(documents) > 4 * batch_size
        written = 0
        with tqdm(total=len(documents), desc="Indexing", unit="doc", disable=not show_progress_bar) as bar:
            for start in range(0, len(documents), batch_size):
                batch = documents[start : start + batch_size]
                written += self._index_batch(batch)
                bar.update(len(batch))
        if written:
            self._bm25 = None
        return written

    def _index_batch(self, batch: Sequence[Document]) -> int:
        ids = [point_id(d.id) for d in batch]
        hashes = ["content_hash", "text_hash"]
        found = self.client.retrieve(self.collection, ids, with_payload=hashes, with_vectors=True)
        stored = {str(p.id): p for p in found}
        points, to_encode = [], []
        for document, pid in zip(batch, ids):
            payload = {
                "doc_id": document.id,
                "text": document.text,
                "metadata": document.metadata,
                "content_hash": content_hash(document.text, document.metadata),
                "text_hash": _text_hash(document.text),
            }
            old = stored.get(pid)
            if old is not None and old.payload.get("content_hash") == payload["content_hash"]:
                continue
            if old is not None and old.payload.get("text_hash") == payload["text_hash"]:
                points.append(models.PointStruct(id=pid, vector=old.vector, payload=payload))
            else:
                to_encode.append((pid, payload))
        if to_encode:
            vectors = self._encode([payload["text"] for _, payload in to_encode])
            points += [
                models.PointStruct(id=pid, vector=vector.tolist(), payload=payload)
                for (pid, payload), vector in zip(to_encode, vectors)
            ]
        if points:
            self.client.upsert(self.collection, points=points, wait=True)
        return len(points)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.embedding_cache is not None:
            return self.embedding_cache.encode(texts, show_progress_bar=False)
        return self.model.encode(texts, show_progress_bar=False)

    # ---------------------------------------------------------------- retrieval
    def retrieve_with_vectors(
        self, query: str, k: int = 100, first_stage: FirstStage = "dense"
    ) -> tuple[list[SearchHit], np.ndarray]:
        """First-stage top-``k`` hits (best first, ``rerank_score`` None) and their stored (k, dim) vectors."""
        hits, vectors, _ = self._retrieve(query, k, first_stage)
        return hits, vectors

    def _retrieve(self, query: str, k: int, first_stage: FirstStage) -> tuple[list[SearchHit], np.ndarray, np.ndarray]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if first_stage not in ("dense", "hybrid"):
            raise ValueError(f"first_stage must be 'dense' or 'hybrid', got {first_stage!r}")
        self._require_collection()
        query_vector = self.model.encode_query(query)
        dense = self.client.query_points(
            self.collection, query=query_vector.tolist(), limit=k, with_payload=True, with_vectors=True
        ).points
        if first_stage == "dense":
            points = [(p, float(p.score)) for p in dense]
        else:
            points = self._fuse(dense, self._bm25_ids(query, k), k)
        hits = [
            SearchHit(p.payload["doc_id"], p.payload["text"], p.payload.get("metadata") or {}, s)
            for p, s in points
        ]
        dim = int(self.model.embedding_dim)
        vectors = np.asarray([p.vector for p, _ in points], dtype=np.float32).reshape(len(points), dim)
        return hits, vectors, query_vector

    def _bm25_ids(self, query: str, k: int) -> list[str]:
        """Point ids of the BM25 top-``k`` (bm25s, English stopwords and Snowball stemming), best first."""
        import bm25s
        import Stemmer

        count = self.count()
        if self._bm25 is None or self._bm25[0] != count:
            ids, texts = [], []
            offset = None
            while True:
                page, offset = self.client.scroll(self.collection, limit=1024, offset=offset, with_payload=["text"])
                ids += [str(p.id) for p in page]
                texts += [p.payload["text"] for p in page]
                if offset is None:
                    break
            stemmer = Stemmer.Stemmer("english").stemWords
            retriever = bm25s.BM25()
            tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
            retriever.index(tokens, show_progress=False)
            self._bm25 = (count, retriever, stemmer, ids)
        _, retriever, stemmer, ids = self._bm25
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        found, scores = retriever.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
        return [ids[int(i)] for i, s in zip(found[0], scores[0]) if s > 0]

    def _fuse(self, dense: list, bm25_ids: list[str], k: int) -> list[tuple[models.Record, float]]:
        """Reciprocal-rank fusion of the dense and BM25 lists; fetches vectors of BM25-only hits."""
        totals: dict[str, float] = {}
        for ranking in ([str(p.id) for p in dense], bm25_ids):
            for rank, pid in enumerate(ranking, 1):
                totals[pid] = totals.get(pid, 0.0) + 1.0 / (RRF_CONSTANT + rank)
        by_id = {str(p.id): p for p in dense}
        missing = [pid for pid in bm25_ids if pid not in by_id]
        if missing:
            fetched = self.client.retrieve(self.collection, missing, with_payload=True, with_vectors=True)
            by_id.update((str(p.id), p) for p in fetched)
        fused = sorted(totals.items(), key=lambda item: (-item[1], by_id[item[0]].payload["doc_id"]))[:k]
        return [(by_id[pid], score) for pid, score in fused]

    # ---------------------------------------------------------------- search
    def search(
        self, query: str, k: int = 100, top_n: int = 10, rerank: bool = True, first_stage: FirstStage = "dense"
    ) -> list[SearchHit]:
        """Retrieve the top ``k``, then (``rerank=True``) rerank their stored vectors in one ResRank pass.

        Returns the best ``top_n`` hits. Only the query is encoded; passages are never re-encoded.
        """
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
        hits, vectors, query_vector = self._retrieve(query, k, first_stage)
        if not rerank or not hits:
            return hits[:top_n]
        ranked = self.model.rerank(
            query, [h.text for h in hits], top_n=top_n, vectors=vectors, query_vector=query_vector
        )
        return [dataclasses.replace(hits[r.index], rerank_score=float(r.score)) for r in ranked]
