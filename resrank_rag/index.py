"""ResRankIndex: a Qdrant collection of ResRank passage vectors, searched then reranked in one pass.

The vector Qdrant stores for retrieval is the passage's one-token representation for reranking, so
``search`` reranks the retrieved vectors directly: no passage is encoded at query time. Each point also
holds a BM25 sparse vector (Qdrant applies the IDF), so hybrid search is one Qdrant query with
dense and sparse prefetches fused by reciprocal rank.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

from resrank_rag.access import (
    ACCESS_FIELD,
    ACCESS_MARK,
    INDEX_ACCESS_KEY,
    AccessError,
    Principal,
    check_access_list,
    check_points,
    read_filter,
)
from resrank_rag.blas_threads import single_threaded_blas
from resrank_rag.documents import Document, UnreadFile, chunk_document, read_documents

__all__ = [
    "AccessError", "Document", "ModelMismatchError", "Principal", "ResRankIndex", "SearchHit", "SyncReport",
    "check_filter", "content_hash", "point_id",
]

DEFAULT_PATH = "./.resrank/qdrant"
ID_NAMESPACE = uuid.UUID("6f1c2b9e-4a57-5d0e-9c1a-7e3b8f2d4c60")
"""Namespace of the uuid5 point ids: a chunk id always maps to the same point."""
RRF_CONSTANT = 60
"""Reciprocal-rank fusion scores 1 / (60 + rank), rank counted from 1."""
DENSE = ""  # the unnamed default vector, so other Qdrant tools read the collection as a plain one
SPARSE = "bm25"
BM25_K1, BM25_B = 1.5, 0.75
MIN_QDRANT = (1, 16)
"""Collection metadata (the model record) and RRF with a chosen constant need Qdrant 1.16."""
PAYLOAD_FIELDS = ("doc_id", "chunk_id", "text", "metadata", "content_hash", "text_hash", "doc_hash")
FirstStage = Literal["dense", "hybrid"]


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


class ModelMismatchError(ValueError):
    """The collection holds vectors from another encoder than the model it was opened with."""


def point_id(chunk_id: str) -> str:
    """The stable Qdrant point id (uuid5) of a chunk id (a document's own id when indexed whole)."""
    return str(uuid.uuid5(ID_NAMESPACE, chunk_id))


def content_hash(text: str, metadata: dict) -> str:
    """Hash of a document's text and metadata: equal hashes mean re-indexing can skip it."""
    canonical = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _doc_hash(chunks: Sequence[Document]) -> str:
    """Hash of a document's whole chunk list: a chunk carrying it proves its document was written completely."""
    return _text_hash(json.dumps([[c.id, content_hash(c.text, c.metadata)] for c in chunks], ensure_ascii=False))


def _token_index(token: str) -> int:
    """A stable 32-bit sparse index for a token (the same in every process and on every machine)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")


def _tokenize(texts: list[str]) -> list[dict[int, int]]:
    """Per text, token index -> count: bm25s tokens (English stopwords removed, Snowball-stemmed)."""
    import bm25s
    import Stemmer

    tokenized = bm25s.tokenize(
        texts, stopwords="en", stemmer=Stemmer.Stemmer("english").stemWords, return_ids=True, show_progress=False
    )
    index_of = {i: _token_index(token) for token, i in tokenized.vocab.items() if token}
    counts = []
    for ids in tokenized.ids:
        bag: dict[int, int] = {}
        for i in ids:
            if i in index_of:
                bag[index_of[i]] = bag.get(index_of[i], 0) + 1
        counts.append(bag)
    return counts


def _bm25_vectors(texts: list[str], avgdl: float) -> list[models.SparseVector]:
    """BM25 term weights tf / (tf + k1 (1 - b + b dl / avgdl)); Qdrant multiplies in the IDF at query time."""
    vectors = []
    for bag in _tokenize(texts):
        norm = BM25_K1 * (1 - BM25_B + BM25_B * sum(bag.values()) / avgdl)
        indices = sorted(bag)
        vectors.append(models.SparseVector(indices=indices, values=[bag[i] / (bag[i] + norm) for i in indices]))
    return vectors


def _dense(vector) -> list[float]:
    return vector.get(DENSE) if isinstance(vector, dict) else vector


def _hit(point, score: float) -> SearchHit:
    return SearchHit(
        id=point.payload.get("chunk_id", point.payload["doc_id"]),
        text=point.payload["text"],
        metadata=point.payload.get("metadata") or {},
        retrieval_score=score,
        doc_id=point.payload["doc_id"],
    )


def _of_docs(doc_ids: Sequence[str]) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids)))])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("v").split("-")[0].split(".")[:2] if part.isdigit())


def _condition_keys(condition) -> Iterator[str]:
    """Payload keys a Qdrant filter (or condition) reads."""
    if isinstance(condition, models.Filter):
        for part in (condition.must, condition.should, condition.must_not):
            for item in part if isinstance(part, list) else [part] if part is not None else []:
                yield from _condition_keys(item)
        if condition.min_should is not None:
            for item in condition.min_should.conditions:
                yield from _condition_keys(item)
    elif isinstance(condition, models.FieldCondition):
        yield condition.key
    elif isinstance(condition, (models.IsEmptyCondition, models.IsNullCondition)):
        yield (condition.is_empty if isinstance(condition, models.IsEmptyCondition) else condition.is_null).key
    elif isinstance(condition, models.NestedCondition):
        yield condition.nested.key


def check_filter(filter, fields: Sequence[str] | None = PAYLOAD_FIELDS) -> models.Filter | None:  # noqa: A002
    """``filter`` if it is None or a Qdrant ``Filter`` (over this index's payload ``fields``; None: any
    payload, e.g. another library's store), else a clear error."""
    if filter is None:
        return None
    if not isinstance(filter, models.Filter):
        raise TypeError(
            f"filter must be a qdrant_client.models.Filter, got {type(filter).__name__}; e.g. models.Filter(must="
            "[models.FieldCondition(key='metadata.dept', match=models.MatchValue(value='HR'))])"
        )
    for key in _condition_keys(filter) if fields is not None else ():
        if key.split(".")[0].split("[")[0] not in fields:
            raise ValueError(
                f"filter key {key!r} is not a field of a ResRankIndex point ({', '.join(fields)}); "
                f"document metadata lives under 'metadata.', e.g. 'metadata.{key}'"
            )
    return filter


class ResRankIndex:
    """Documents in a Qdrant collection (cosine, one ResRank encoder vector per chunk), searchable with rerank.

    ``path`` is an embedded Qdrant folder (default ``./.resrank/qdrant``; ``":memory:"`` for tests);
    ``url`` (and ``api_key``) a Qdrant server instead: the same code, nothing else changes.
    ``embedding_cache`` (an ``EmbeddingCache``) makes indexing reuse vectors encoded before, e.g. by an
    evaluation run. Use it as a context manager, or call ``close()``, to release an embedded folder.
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
        self._remote = url is not None
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
                    f"{error} Close the other ResRankIndex on {folder} (index.close()), or run a "
                    "Qdrant server and pass url= (see docs/qdrant.md)."
                ) from None
        self._layout: dict | None = None  # {"avgdl": float, "sparse": bool} once the collection is known
        if self.client.collection_exists(collection):
            self._open()

    def close(self) -> None:
        """Release the Qdrant client (and with it the lock on an embedded folder)."""
        self.client.close()

    def __enter__(self) -> ResRankIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- collection and model record
    def _model_record(self) -> dict:
        return {
            "resrank_model": self.model.name,
            "encoder_fingerprint": self.model.encoder_fingerprint,
            "vector_size": int(self.model.embedding_dim),
        }

    def _check_server(self) -> None:
        """Raise a clear error when the Qdrant server is older than the features this index needs."""
        try:
            version = self.client.info().version
        except Exception:  # noqa: BLE001 - an unreadable version is no proof of an old server
            return
        if _version(version) < MIN_QDRANT:
            raise RuntimeError(
                f"the Qdrant server is version {version}, but ResRankIndex needs Qdrant "
                f"{'.'.join(map(str, MIN_QDRANT))} or newer (collection metadata holds the model record); "
                "upgrade the server, e.g. `docker pull qdrant/qdrant`"
            )

    def _open(self) -> dict:
        """Check the collection's model record and read its layout (once)."""
        if self._layout is not None:
            return self._layout
        info = self.client.get_collection(self.collection)
        recorded = info.config.metadata or {}
        if "encoder_fingerprint" not in recorded:
            self._check_server()
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
        if self._remote and "doc_id" not in (info.payload_schema or {}):
            self._index_doc_id()
        sparse = SPARSE in (info.config.params.sparse_vectors or {})
        self._layout = {
            "avgdl": float(recorded.get("bm25_avgdl", 1.0)),
            "sparse": sparse,
            ACCESS_MARK: bool(recorded.get(ACCESS_MARK)),  # documents with allowed_groups were written
        }
        return self._layout

    def _index_doc_id(self) -> None:
        """A keyword index on ``doc_id`` keeps a server's delete and sync filters fast (embedded mode has none)."""
        self.client.create_payload_index(self.collection, "doc_id", models.PayloadSchemaType.KEYWORD, wait=True)

    def _ensure_collection(self, first_texts: list[str]) -> dict:
        """Open the collection, creating it when missing; BM25's average length comes from the first batch."""
        if self._layout is not None:
            return self._writable(self._layout)
        if self.client.collection_exists(self.collection):
            return self._writable(self._open())
        lengths = [sum(bag.values()) for bag in _tokenize(first_texts)]
        avgdl = max(1.0, float(np.mean(lengths))) if lengths else 1.0
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=int(self.model.embedding_dim), distance=models.Distance.COSINE),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={**self._model_record(), "bm25_avgdl": avgdl},
        )
        if "encoder_fingerprint" not in (self.client.get_collection(self.collection).config.metadata or {}):
            self.client.delete_collection(self.collection)  # the server dropped the metadata: too old
            self._check_server()
            raise RuntimeError(f"Qdrant did not keep the metadata of collection {self.collection!r}")
        if self._remote:
            self._index_doc_id()
        return self._open()

    def _writable(self, layout: dict) -> dict:
        if not layout["sparse"]:
            raise ValueError(
                f"Qdrant collection {self.collection!r} was built by an older resrank-rag, without the BM25 sparse "
                f"vector this version writes and searches; index into a new collection "
                f"(`resrank index SOURCE --collection NEW_NAME`)"
            )
        return layout

    def _require_collection(self) -> dict:
        if self._layout is None and not self.client.collection_exists(self.collection):
            raise ValueError(
                f"Qdrant collection {self.collection!r} does not exist yet; index documents first "
                f"(ResRankIndex.index or `resrank index PATH --collection {self.collection}`)"
            )
        return self._open()

    def count(self, filter: models.Filter | None = None, *, principal: Principal | None = None) -> int:  # noqa: A002
        """Number of indexed points (chunks; 0 before the first ``index``) within ``filter`` that ``principal``
        may read. A collection holding access lists needs a principal (else ``AccessError``): an answer
        for nobody in particular would tell whether forbidden text exists."""
        if not self.client.collection_exists(self.collection):
            return 0
        return self._count(self._readable(filter, principal))

    def scroll(
        self, filter: models.Filter | None = None, *, principal: Principal | None = None, page_size: int = 256  # noqa: A002
    ) -> Iterator[SearchHit]:
        """Every stored chunk within ``filter`` that ``principal`` may read, in point order (scores are 0).

        A collection holding access lists needs a principal (else ``AccessError``), as ``search`` does.
        """
        if not self.client.collection_exists(self.collection):
            return
        selector = self._readable(filter, principal)
        offset = None
        while True:
            page, offset = self.client.scroll(
                self.collection, scroll_filter=selector, limit=page_size, offset=offset, with_payload=True,
                with_vectors=False,
            )
            self._check_returned(principal, page)
            yield from (_hit(p, 0.0) for p in page)
            if offset is None:
                return

    def _readable(self, filter, principal: Principal | None) -> models.Filter | None:  # noqa: A002
        """``filter`` (checked) within what ``principal`` may read; the access mark is read fresh from Qdrant."""
        controlled = principal is None and self.access_controlled()
        return read_filter(principal, check_filter(filter), access_controlled=controlled, collection=self.collection)

    def _count(self, selector: models.Filter | None) -> int:
        return int(self.client.count(self.collection, count_filter=selector, exact=True).count)

    # ---------------------------------------------------------------- writing
    def index(
        self,
        documents: Iterable[Document],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        *,
        chunk_size: int | None = None,
        overlap: int | None = None,
        keep: Iterable[UnreadFile] = (),
    ) -> int:
        """Add or update documents, encoding and upserting batch by batch; returns how many chunks were written.

        ``documents`` is read lazily, one batch at a time. With ``chunk_size`` (words) long documents are
        split as ``documents.chunk_document`` does (ids ``<id>#<n>``); without it each document is one
        point, or one per page or section when it has them (a chunk never spans two). A document's
        earlier chunks that its new version no longer has are removed. Idempotent and safe to interrupt:
        unchanged documents are skipped without encoding, a text whose metadata alone changed keeps its
        stored vectors, and a re-run after a crash finishes the job. A chunk id that is stored for another
        document is refused rather than overwritten. ``keep``: files that could not be read this time
        (``ReadReport.unread``); what was indexed of them gets the access list that governs them now.
        """
        return self._write(documents, batch_size, show_progress_bar, chunk_size, overlap, sync=False, keep=keep).written

    def sync(
        self,
        source: str | Path | Iterable[Document],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        *,
        chunk_size: int | None = None,
        overlap: int | None = None,
        keep: Iterable[str | UnreadFile] = (),
    ) -> SyncReport:
        """Make the collection equal to ``source``: a folder or file (``read_documents``) or Documents.

        New documents are added, changed ones re-chunked and re-encoded (only changed texts), chunks a
        document no longer has and documents that are gone are removed. Safe to kill at any moment: run it
        again and the collection equals the source. Refuses an empty source rather than emptying the collection.
        ``keep`` holds files that could not be read this time (``ReadReport.unread``): every document
        indexed of them stays, under the access list that governs the file now (a readable list applies
        even when the file is not); it also takes document ids to leave as stored. It is read once the
        source is consumed.
        """
        documents = read_documents(source) if isinstance(source, (str, Path)) else source
        return self._write(documents, batch_size, show_progress_bar, chunk_size, overlap, sync=True, keep=keep)

    def delete(self, ids: Iterable[str], *, principal: Principal | None = None) -> int:
        """Remove documents, every chunk of each, by document id; returns how many points went. Unknown ids are fine.

        Only chunks ``principal`` may read are removed (and counted); a collection holding access lists
        needs a principal (else ``AccessError``): trusted code passes ``Principal.unrestricted_access()``.
        """
        if isinstance(ids, str):
            raise TypeError(f"ids must be a list of document ids, not one string; use delete([{ids!r}])")
        ids = list(dict.fromkeys(ids))
        if not all(isinstance(i, str) for i in ids):
            raise TypeError("document ids must be strings")
        if not ids or not self.client.collection_exists(self.collection):
            return 0
        self._open()
        removed = 0
        for start in range(0, len(ids), 1024):
            selector = self._readable(_of_docs(ids[start : start + 1024]), principal)
            removed += self._count(selector)
            self.client.delete(self.collection, points_selector=models.FilterSelector(filter=selector), wait=True)
        return removed

    def _write(self, documents, batch_size, show_progress_bar, chunk_size, overlap, sync: bool, keep=()) -> SyncReport:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if chunk_size is None and overlap is not None:
            raise ValueError("overlap needs chunk_size: pass chunk_size= (words per chunk) too, or leave overlap out")
        if chunk_size is not None:
            chunk_document(Document("check", ""), chunk_size, 0 if overlap is None else overlap)  # validates both
        total = len(documents) if isinstance(documents, Sized) else None
        if show_progress_bar is None:
            show_progress_bar = total is not None and total > 4 * batch_size
        # Nothing stale can exist in a collection that was empty when this run began: skip the stale filters.
        fresh = not self.client.collection_exists(self.collection) or self._count(None) == 0
        kept: dict[str, str] = {}  # point id -> its document's id
        n_documents = written = removed = 0
        with tqdm(total=total, desc="Indexing", unit="doc", disable=not show_progress_bar) as bar:
            for batch in self._batches(documents, batch_size, chunk_size, overlap, kept):
                done, dropped = self._write_batch(batch, fresh)
                written += done
                removed += dropped
                n_documents += len(batch)
                bar.update(len(batch))
        held, rewritten = self._keep_unread(list(keep))
        written += rewritten
        if sync:
            if not n_documents and not held:  # (files that could not be read keep what was indexed of them)
                raise ValueError(
                    "the source holds no documents; sync would empty the collection. Delete it explicitly "
                    "instead (index.delete(ids) or index.client.delete_collection(name))"
                )
            removed += self._remove_all_but(kept.keys() | held)
        return SyncReport(documents=n_documents, chunks=len(kept), written=written, removed=removed)

    def _batches(
        self, documents, batch_size: int, chunk_size: int | None, overlap: int | None, kept: dict[str, str]
    ) -> Iterator[list[tuple[str, list[Document]]]]:
        """Whole documents with their chunks, grouped until a batch holds ``batch_size`` chunks."""
        seen: dict[str, str] = {}  # document id -> where it came from
        batch, size = [], 0
        for position, document in enumerate(documents):
            if not isinstance(document, Document):
                raise TypeError(
                    f"documents[{position}] is {type(document).__name__}; wrap it as Document(id, text, metadata)"
                )
            where = f"in {document.metadata['path']}" if isinstance(document.metadata.get("path"), str) else f"documents[{position}]"
            if document.id in seen:
                raise ValueError(
                    f"document id {document.id!r} appears twice ({seen[document.id]}, then {where}); ids must be unique "
                    "in a collection. JSONL files that number their rows alike (BEIR corpora, say) clash: give their "
                    "rows distinct ids, or index each file into its own collection"
                )
            seen[document.id] = where
            if ACCESS_FIELD in document.metadata:  # a wrong type here would make Qdrant's filter miss or leak
                groups = check_access_list(document.metadata[ACCESS_FIELD], f"document {document.id!r}")
                if groups != document.metadata[ACCESS_FIELD]:
                    document = dataclasses.replace(document, metadata={**document.metadata, ACCESS_FIELD: groups})
            if chunk_size is None and not document.sections:
                chunks = [document]
            else:
                chunks = chunk_document(document, chunk_size, overlap or 0)
            for chunk in chunks:
                pid = point_id(chunk.id)
                if pid in kept:
                    raise ValueError(
                        f"chunk id {chunk.id!r} of document {document.id!r} appears twice: it is also the id of a chunk "
                        f"of document {kept[pid]!r}; ids must be unique"
                    )
                kept[pid] = document.id
            batch.append((document.id, chunks))
            size += len(chunks)
            if size >= batch_size:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _keep_unread(self, keep: list) -> tuple[set[str], int]:
        """The points of documents that could not be read this time (which sync keeps), and how many of
        their access lists were rewritten to the list that governs their file now (``UnreadFile``)."""
        names = [k for k in keep if isinstance(k, str)]
        files = [k for k in keep if isinstance(k, UnreadFile)]
        if len(names) + len(files) != len(keep):
            raise TypeError("keep holds document ids (str) and UnreadFile records (ReadReport.unread)")
        if not keep or not self.client.collection_exists(self.collection):
            return set(), 0
        held = {str(p.id) for p in self._scroll_all(_of_docs(names))} if names else set()
        rewritten = 0
        for file in files:
            read_from = [models.FieldCondition(key="metadata.path", match=models.MatchValue(value=file.path))]
            if file.documents:
                read_from.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=sorted(file.documents))))
            for point in self._scroll_all(models.Filter(should=read_from), ["doc_id", "metadata"]):
                held.add(str(point.id))
                metadata = dict(point.payload.get("metadata") or {})
                groups = file.access_list(point.payload.get("doc_id"))
                if (ACCESS_FIELD in metadata, metadata.get(ACCESS_FIELD)) == (groups is not None, groups):
                    continue
                if groups is None:
                    metadata.pop(ACCESS_FIELD, None)
                else:
                    metadata[ACCESS_FIELD] = groups
                    if not self._open()[ACCESS_MARK]:
                        self._mark_access_controlled()
                # Empty hashes: once the file reads again, its chunks look changed and are rewritten (payload only).
                payload = {"metadata": metadata, "content_hash": "", "doc_hash": ""}
                self.client.set_payload(self.collection, payload=payload, points=[point.id], wait=True)
                rewritten += 1
        return held, rewritten

    def _scroll_all(self, selector: models.Filter, payload: list[str] | bool = False) -> Iterator:
        """Every point within ``selector`` (trusted internal reads: no access filter)."""
        offset = None
        while True:
            page, offset = self.client.scroll(
                self.collection, scroll_filter=selector, limit=2048, offset=offset, with_payload=payload,
                with_vectors=False,
            )
            yield from page
            if offset is None:
                return

    def _write_batch(self, batch: list[tuple[str, list[Document]]], fresh: bool) -> tuple[int, int]:
        """Write the documents of one batch that are not up to date; returns (chunks written, stale points removed).

        Order: encode, remove the document's stale chunks, upsert its chunks carrying the new document hash.
        A document is up to date only when every chunk exists with that hash, so a crash anywhere leaves
        it looking changed and the next run redoes it.
        """
        layout = self._ensure_collection([c.text for _, chunks in batch for c in chunks])
        ids = [point_id(c.id) for _, chunks in batch for c in chunks]
        wanted = ["doc_id", "content_hash", "text_hash", "doc_hash"]
        stored = {str(p.id): p for p in self.client.retrieve(self.collection, ids, with_payload=wanted, with_vectors=True)}
        for doc_id, chunks in batch:  # before anything of the batch is written
            for chunk in chunks:
                owner = getattr(stored.get(point_id(chunk.id)), "payload", {}).get("doc_id", doc_id)
                if owner != doc_id:
                    raise ValueError(
                        f"chunk id {chunk.id!r} of document {doc_id!r} is stored for document {owner!r} already; "
                        f"writing it would overwrite that document's chunk. Give {doc_id!r} another id, or delete "
                        f"{owner!r} first (index.delete([{owner!r}], principal=...))"
                    )
        points, to_encode, changed_docs, changed_ids, written = [], [], [], [], 0
        for doc_id, chunks in batch:
            doc_hash = _doc_hash(chunks)
            olds = [stored.get(point_id(c.id)) for c in chunks]
            if chunks and all(o is not None and o.payload.get("doc_hash") == doc_hash for o in olds):
                continue
            changed_docs.append(doc_id)
            for chunk, old in zip(chunks, olds):
                payload = {
                    "doc_id": doc_id,
                    "chunk_id": chunk.id,
                    "text": chunk.text,
                    "metadata": chunk.metadata,
                    "content_hash": content_hash(chunk.text, chunk.metadata),
                    "text_hash": _text_hash(chunk.text),
                    "doc_hash": doc_hash,
                }
                pid = point_id(chunk.id)
                changed_ids.append(pid)
                written += old is None or old.payload.get("content_hash") != payload["content_hash"]
                old_vector = old.vector if old is not None and isinstance(old.vector, dict) else {}
                if old is not None and old.payload.get("text_hash") == payload["text_hash"] and SPARSE in old_vector:
                    points.append(models.PointStruct(id=pid, vector=old_vector, payload=payload))
                else:
                    to_encode.append((pid, payload))
        if to_encode:
            texts = [payload["text"] for _, payload in to_encode]
            dense = self._encode(texts)
            sparse = _bm25_vectors(texts, layout["avgdl"])
            points += [
                models.PointStruct(id=pid, vector={DENSE: d.tolist(), SPARSE: s}, payload=payload)
                for (pid, payload), d, s in zip(to_encode, dense, sparse)
            ]
        removed = 0
        if changed_docs and not fresh:
            removed = self._remove_stale(changed_docs, changed_ids)
        if not layout[ACCESS_MARK] and any(ACCESS_FIELD in p.payload["metadata"] for p in points):
            self._mark_access_controlled()  # before the first such point exists
        if points:
            self.client.upsert(self.collection, points=points, wait=True)
        return written, removed

    def _mark_access_controlled(self) -> None:
        """Record in the collection that it holds access lists: from now on every search needs a principal."""
        self.client.update_collection(self.collection, metadata={ACCESS_MARK: True})
        if self._remote:
            self.client.create_payload_index(
                self.collection, f"metadata.{ACCESS_FIELD}", models.PayloadSchemaType.KEYWORD, wait=True
            )
        self._layout[ACCESS_MARK] = True

    def access_controlled(self) -> bool:
        """Whether any document written into the collection carried ``allowed_groups`` (read fresh from Qdrant)."""
        if self._layout is not None and self._layout[ACCESS_MARK]:
            return True
        if not self.client.collection_exists(self.collection):
            return False
        recorded = self.client.get_collection(self.collection).config.metadata or {}
        if recorded.get(ACCESS_MARK) and self._layout is not None:
            self._layout[ACCESS_MARK] = True
        return bool(recorded.get(ACCESS_MARK))

    def _access(self, principal: Principal | None, filter=None) -> models.Filter | None:  # noqa: A002
        """``filter`` within what ``principal`` may read; an error when an access-controlled collection is searched without one.

        Without a principal this reads the mark as this index last saw it (no extra Qdrant call); a search
        that then meets a chunk with an access list refuses too and remembers it (``_check_returned``).
        """
        controlled = principal is None and self._open()[ACCESS_MARK]
        return read_filter(principal, filter, access_controlled=controlled, collection=self.collection)

    def _check_returned(self, principal: Principal | None, points) -> None:
        try:
            check_points(principal, (p.payload for p in points), INDEX_ACCESS_KEY, self.collection)
        except AccessError:
            self._open()[ACCESS_MARK] = True  # another writer added access lists since this index opened
            raise

    def _remove_stale(self, doc_ids: list[str], current: list[str]) -> int:
        """Delete the points of these documents (payload ``doc_id``) that are not among their current chunks."""
        selector = models.Filter(
            must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=doc_ids))],
            must_not=[models.HasIdCondition(has_id=current)] if current else None,
        )
        stale = self.client.count(self.collection, count_filter=selector, exact=True).count
        if stale:
            self.client.delete(self.collection, points_selector=models.FilterSelector(filter=selector), wait=True)
        return stale

    def _remove_all_but(self, kept: set[str]) -> int:
        """Delete every point whose id is not in ``kept`` (gone from a synced source)."""
        stale = [p.id for p in self._scroll_all(None) if str(p.id) not in kept]
        for start in range(0, len(stale), 1024):
            selector = models.PointIdsList(points=stale[start : start + 1024])
            self.client.delete(self.collection, points_selector=selector, wait=True)
        return len(stale)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.embedding_cache is not None:
            return self.embedding_cache.encode(texts, show_progress_bar=False)
        return self.model.encode(texts, show_progress_bar=False)

    # ---------------------------------------------------------------- retrieval
    def retrieve_with_vectors(
        self,
        query: str,
        k: int = 100,
        first_stage: FirstStage = "dense",
        *,
        filter: models.Filter | None = None,  # noqa: A002 - Qdrant's own name
        query_vector=None,
        principal: Principal | None = None,
    ) -> tuple[list[SearchHit], np.ndarray]:
        """First-stage top-``k`` hits (best first, ``rerank_score`` None) and their stored (k, dim) vectors.

        ``filter`` is a Qdrant ``Filter`` on the payload (metadata under ``metadata.``); ``query_vector``
        is the query's ResRank vector when the caller has it already (then the query is not encoded).
        ``principal`` restricts the candidates to the chunks that user may read (see ``search``).
        """
        hits, vectors, _ = self._retrieve(query, k, first_stage, filter, query_vector, principal)
        return hits, vectors

    def _retrieve(
        self, query: str, k: int, first_stage: FirstStage, filter, query_vector, principal  # noqa: A002
    ) -> tuple[list[SearchHit], np.ndarray, np.ndarray]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if first_stage not in ("dense", "hybrid"):
            raise ValueError(f"first_stage must be 'dense' or 'hybrid', got {first_stage!r}")
        filter = check_filter(filter)  # noqa: A001
        layout = self._require_collection()
        # The access filter goes wherever the filter goes: the dense query, and every prefetch of hybrid search.
        filter = self._access(principal, filter)  # noqa: A001
        dim = int(self.model.embedding_dim)
        if query_vector is None:
            query_vector = self.model.encode_query(query)
        else:
            query_vector = np.asarray(query_vector, dtype=np.float32)
            if query_vector.shape != (dim,):
                raise ValueError(f"query_vector must have shape ({dim},) (this model's query vector), got {query_vector.shape}")
        options = dict(limit=k, query_filter=filter, with_payload=True, with_vectors=True)
        if first_stage == "dense":
            request = dict(query=query_vector.tolist())
        else:
            if not layout["sparse"]:
                self._writable(layout)
            bag = _tokenize([query])[0]
            sparse = models.SparseVector(indices=sorted(bag), values=[1.0] * len(bag))
            request = dict(
                prefetch=[
                    models.Prefetch(query=query_vector.tolist(), filter=filter, limit=k),
                    models.Prefetch(query=sparse, using=SPARSE, filter=filter, limit=k),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_CONSTANT + 1)),  # Qdrant counts positions from 0
            )
        with single_threaded_blas():  # embedded Qdrant scores with numpy; see blas_threads.py
            points = self.client.query_points(self.collection, **request, **options).points
        self._check_returned(principal, points)
        hits = [_hit(p, float(p.score)) for p in points]
        vectors = np.asarray([_dense(p.vector) for p in points], dtype=np.float32).reshape(len(points), dim)
        return hits, vectors, query_vector

    # ---------------------------------------------------------------- search
    def search(
        self,
        query: str,
        k: int = 100,
        top_n: int = 10,
        rerank: bool = True,
        first_stage: FirstStage = "dense",
        *,
        filter: models.Filter | None = None,  # noqa: A002 - Qdrant's own name
        query_vector=None,
        ordered: bool | None = None,
        principal: Principal | None = None,
    ) -> list[SearchHit]:
        """Retrieve the top ``k`` (optionally within ``filter``), then rerank their stored vectors in one pass.

        Returns the best ``top_n`` hits. The query is encoded once (not at all with ``query_vector``);
        passages are never re-encoded, and one Qdrant call returns the candidates with their vectors.
        ``ordered`` goes to ``ResRank.rerank`` (whether the first-stage order feeds the rank prior).
        ``principal`` (a ``Principal``) admits only chunks whose ``allowed_groups`` hold one of its groups or
        ``"*"``, as a Qdrant filter of the first stage; a collection holding access lists refuses a search
        without one (``AccessError``).
        """
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
        hits, vectors, query_vector = self._retrieve(query, k, first_stage, filter, query_vector, principal)
        if not rerank or not hits:
            return hits[:top_n]
        ranked = self.model.rerank(
            query, [h.text for h in hits], top_n=top_n, vectors=vectors, query_vector=query_vector, ordered=ordered
        )
        return [dataclasses.replace(hits[r.index], rerank_score=float(r.score)) for r in ranked]
