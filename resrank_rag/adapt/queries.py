"""Example queries for ``resrank adapt``: read a JSONL file, check it, and find its ids in the collection."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from qdrant_client import models

from resrank_rag.jsonl import read_jsonl

FORMAT = '{"query": ..., "relevant": [doc or chunk ids], "grades": [optional, one per id]} or {"query": ..., "positive": text}'


@dataclass(frozen=True)
class LabelledQuery:
    """One example question and what answers it: ids (a chunk's id, or a document's for all its chunks) with grades."""

    query: str
    relevant: dict[str, int] = field(default_factory=dict)
    positive: str | None = None
    """A passage's text, matched to the chunk(s) holding it by ``resolve``."""
    where: str = ""
    """``file:line``, for error messages."""
    negatives: dict[str, float] = field(default_factory=dict)
    """Chunk ids known not to answer, with how sure that is (feedback: 👎 1.0, skipped above a 👍 0.5)."""
    unlabelled_weight: float = 1.0
    """The weight of the list's other candidates as negatives: 1 for judged queries, lower for feedback."""

    @property
    def key(self) -> str:
        """A stable id for the query (its text), the same in every run."""
        return "q" + hashlib.sha256(self.query.strip().encode("utf-8", "surrogatepass")).hexdigest()[:16]


def read_queries(path: str | Path) -> list[LabelledQuery]:
    """Labelled queries of a JSONL file, one object a line; every mistake raises ValueError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"queries file {path} not found; write one JSON object per line: {FORMAT}")
    queries = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where} must be a JSON object: {FORMAT}")
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f'{where} needs a non-empty "query" string: {FORMAT}')
        unknown = sorted(set(row) - {"query", "relevant", "grades", "positive", "id", "metadata"})
        if unknown:
            raise ValueError(f"{where} has unknown fields {unknown}: {FORMAT}")
        if ("relevant" in row) == ("positive" in row):
            raise ValueError(f'{where} needs either "relevant" (ids) or "positive" (a passage text), not both or neither')
        if "positive" in row:
            if not isinstance(row["positive"], str) or not row["positive"].strip():
                raise ValueError(f'{where}: "positive" must be the non-empty text of a passage in the collection')
            queries.append(LabelledQuery(query, positive=row["positive"], where=where))
            continue
        queries.append(LabelledQuery(query, _graded(row, where), where=where))
    if not queries:
        raise ValueError(f"{path} holds no queries; write one JSON object per line: {FORMAT}")
    return queries


def _graded(row: dict, where: str) -> dict[str, int]:
    ids, grades = row["relevant"], row.get("grades")
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f'{where}: "relevant" must be a non-empty list of document or chunk ids (strings)')
    if grades is None:
        grades = [1] * len(ids)
    if not isinstance(grades, list) or len(grades) != len(ids):
        raise ValueError(f'{where}: "grades" must be a list with one grade per relevant id ({len(ids)})')
    if not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in grades) or max(grades) < 1:
        raise ValueError(f'{where}: grades must be whole numbers >= 0 (0: not relevant), at least one >= 1')
    return dict(zip(ids, grades))


def resolve(index, queries: list[LabelledQuery]) -> list[LabelledQuery]:
    """The queries with every ``positive`` replaced by the chunk ids holding that text; raises ValueError
    for an id that is neither a chunk id nor a document id of the collection, or a text found nowhere."""
    from resrank_rag.index import point_id

    wanted = sorted({i for q in queries for i in q.relevant})
    found = set()
    for start in range(0, len(wanted), 512):
        batch = wanted[start : start + 512]  # a chunk id, or the id of a document indexed whole
        points = index.client.retrieve(index.collection, [point_id(i) for i in batch], with_payload=["chunk_id"])
        found |= {p.payload.get("chunk_id") for p in points}
        missing = [i for i in batch if i not in found]
        if missing:  # the id of a chunked document
            selector = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=missing))])
            found |= {p.payload["doc_id"] for p in _scroll(index, selector, ["doc_id"])}
    for query in queries:
        unknown = [i for i in query.relevant if i not in found]
        if unknown:
            raise ValueError(
                f"{query.where}: {unknown[:5]} {'is' if len(unknown) == 1 else 'are'} neither a chunk id nor a document id "
                f"of collection {index.collection!r}. Use the ids it was indexed with (chunk ids are <doc-id>#<n>; "
                "`resrank search` shows them), or give the passage text as \"positive\"."
            )
    return [q if q.positive is None else LabelledQuery(q.query, _match(index, q), where=q.where) for q in queries]


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _scroll(index, selector, payload, limit: int | None = None) -> list:
    points, offset = [], None
    while True:
        page, offset = index.client.scroll(index.collection, scroll_filter=selector, limit=256, offset=offset,
                                           with_payload=payload, with_vectors=False)
        points += page
        if offset is None or (limit and len(points) >= limit):
            return points


def _match(index, query: LabelledQuery) -> dict[str, int]:
    """Chunk ids whose text holds the positive (or, for a long positive, lies inside it): grade 1."""
    positive = _normal(query.positive)
    selector = models.Filter(must=[models.FieldCondition(key="text", match=models.MatchText(text=query.positive))])
    points = _scroll(index, selector, ["chunk_id", "text"], limit=64)
    texts = {p.payload["chunk_id"]: p.payload["text"] for p in points}
    if not texts:  # no chunk holds every word of it: look among its nearest chunks
        from resrank_rag.access import Principal

        hits, _ = index.retrieve_with_vectors(query.positive, k=20, principal=Principal.unrestricted_access("adapt"))
        texts = {h.id: h.text for h in hits}
    matched = {cid: 1 for cid, text in texts.items() if _normal(text) and (positive in _normal(text) or _normal(text) in positive)}
    if not matched:
        raise ValueError(
            f'{query.where}: no chunk of collection {index.collection!r} holds the "positive" text '
            f"{query.positive[:60]!r}; quote a passage verbatim, or give its ids as \"relevant\""
        )
    return matched
