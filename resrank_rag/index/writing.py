"""Writing a ResRankIndex: index (add or update), sync (make it equal a source), delete; chunking, hashing,
encoding and upserting batch by batch so that a crash at any point is finished by the next run."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path

import numpy as np
from qdrant_client import models
from tqdm.auto import tqdm

from resrank_rag.access import ACCESS_FIELD, ACCESS_MARK, Principal, check_access_list
from resrank_rag.documents import Document, UnreadFile, chunk_document, read_documents
from resrank_rag.index import sparse
from resrank_rag.index.collection import Collection
from resrank_rag.index.points import DENSE, SPARSE, SyncReport, content_hash, doc_hash, of_docs, point_id, text_hash


class Writing(Collection):
    """The writing half of ``ResRankIndex``."""

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
            selector = self._readable(of_docs(ids[start : start + 1024]), principal)
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
        held = {str(p.id) for p in self._scroll_all(of_docs(names))} if names else set()
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
        for page in self._pages(selector, payload, 2048):
            yield from page

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
            whole = doc_hash(chunks)
            olds = [stored.get(point_id(c.id)) for c in chunks]
            if chunks and all(o is not None and o.payload.get("doc_hash") == whole for o in olds):
                continue
            changed_docs.append(doc_id)
            for chunk, old in zip(chunks, olds):
                payload = {
                    "doc_id": doc_id,
                    "chunk_id": chunk.id,
                    "text": chunk.text,
                    "metadata": chunk.metadata,
                    "content_hash": content_hash(chunk.text, chunk.metadata),
                    "text_hash": text_hash(chunk.text),
                    "doc_hash": whole,
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
            sparse_vectors = sparse.bm25_vectors(texts, layout["avgdl"])
            points += [
                models.PointStruct(id=pid, vector={DENSE: d.tolist(), SPARSE: s}, payload=payload)
                for (pid, payload), d, s in zip(to_encode, dense, sparse_vectors)
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
