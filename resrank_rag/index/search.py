"""Searching a ResRankIndex: dense or hybrid (dense + BM25 fused by RRF) first stage in one Qdrant query,
then ResRank reranks the returned stored vectors; count and scroll read within the same access rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import numpy as np
from qdrant_client import models

from resrank_rag.access import ACCESS_MARK, INDEX_ACCESS_KEY, AccessError, Principal, check_points, read_filter
from resrank_rag.blas_threads import single_threaded_blas
from resrank_rag.index import sparse
from resrank_rag.index.filters import check_filter
from resrank_rag.index.points import SPARSE, SearchHit, hit, stored_dense
from resrank_rag.index.writing import Writing

RRF_CONSTANT = 60
"""Reciprocal-rank fusion scores 1 / (60 + rank), rank counted from 1."""
FirstStage = Literal["dense", "hybrid"]


class ResRankIndex(Writing):
    """Documents in a Qdrant collection (cosine, one ResRank encoder vector per chunk), searchable with rerank.

    ``path`` is an embedded Qdrant folder (default ``./.resrank/qdrant``; ``":memory:"`` for tests);
    ``url`` (and ``api_key``) a Qdrant server instead: the same code, nothing else changes.
    ``embedding_cache`` (an ``EmbeddingCache``) makes indexing reuse vectors encoded before, e.g. by an
    evaluation run. Use it as a context manager, or call ``close()``, to release an embedded folder.
    """

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
        for page in self._pages(self._readable(filter, principal), True, page_size):
            self._check_returned(principal, page)
            yield from (hit(p, 0.0) for p in page)

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
            bag = sparse.tokenize([query])[0]
            sparse_query = models.SparseVector(indices=sorted(bag), values=[1.0] * len(bag))
            request = dict(
                prefetch=[
                    models.Prefetch(query=query_vector.tolist(), filter=filter, limit=k),
                    models.Prefetch(query=sparse_query, using=SPARSE, filter=filter, limit=k),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=RRF_CONSTANT + 1)),  # Qdrant counts positions from 0
            )
        with single_threaded_blas():  # embedded Qdrant scores with numpy; see blas_threads.py
            points = self.client.query_points(self.collection, **request, **options).points
        self._check_returned(principal, points)
        hits = [hit(p, float(p.score)) for p in points]
        vectors = np.asarray([stored_dense(p.vector) for p in points], dtype=np.float32).reshape(len(points), dim)
        return hits, vectors, query_vector

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
