"""Users' 👍/👎 (``resrank_rag.feedback``) as ``adapt``'s labelled queries: 👍 are positives; 👎, and passages
shown above a 👍 but left unrated, are negatives of lower weight; the rest of the list weaker still."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resrank_rag.adapt.queries import LabelledQuery
from resrank_rag.feedback import FeedbackList, read_feedback


@dataclass(frozen=True)
class FeedbackWeights:
    """How sure each kind of negative is, as a RankNet pair weight (a 👍 positive's pairs weigh 1)."""

    disliked: float = 1.0
    """👎."""
    skipped: float = 0.5
    """Shown above a 👍 and not rated: the user read past it."""
    unrated: float = 0.25
    """Every other candidate of the first-stage list (shown below the last 👍, or not shown)."""

    def __post_init__(self) -> None:
        for name in ("disliked", "skipped", "unrated"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"feedback weight {name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass
class FeedbackQueries:
    """The queries made from a feedback file, and what was dropped on the way."""

    queries: list[LabelledQuery]
    lists: int
    events: int
    dropped_events: int
    """Ratings of chunks no longer in the collection (deleted or re-chunked since)."""
    lists_without_positive: int
    sha256: str

    def summary(self) -> dict:
        return {"lists": self.lists, "events": self.events, "dropped_events": self.dropped_events,
                "lists_without_positive": self.lists_without_positive, "queries": len(self.queries),
                "sha256": self.sha256}


def feedback_queries(path: str | Path, index=None, weights: FeedbackWeights = FeedbackWeights()) -> FeedbackQueries:
    """Labelled queries from the rated lists in ``path`` (a feedback store or its JSONL export). With an
    ``index``, ratings of chunks no longer in it are dropped here, at training time."""
    lists = read_feedback(path)
    if not lists:
        raise ValueError(f"{path} holds no rated lists: rate some passages (👍/👎) in the demo first")
    existing = None
    if index is not None:
        existing = chunk_ids(index, [s.chunk_id for item in lists for s in item.shown])
    queries, dropped, empty = [], 0, 0
    for item in lists:
        query, lost = to_query(item, existing, weights, where=f"{path} list {item.list_id}")
        dropped += lost
        if query is None:
            empty += 1
        else:
            queries.append(query)
    return FeedbackQueries(queries, len(lists), sum(item.events for item in lists), dropped, empty,
                           hashlib.sha256(Path(path).read_bytes()).hexdigest())


def to_query(item: FeedbackList, existing: set[str] | None, weights: FeedbackWeights,
             where: str = "") -> tuple[LabelledQuery | None, int]:
    """(the list as a labelled query, or None when no 👍 is left; how many of its ratings were dropped)."""
    ratings = {i: label for i, label in item.ratings.items() if existing is None or i in existing}
    lost = len(item.ratings) - len(ratings)
    liked = {i for i, label in ratings.items() if label > 0}
    if not liked:
        return None, lost
    shown = sorted(item.shown, key=lambda s: s.position)
    last_liked = max(s.position for s in shown if s.chunk_id in liked)
    negatives = {s.chunk_id: weights.skipped for s in shown
                 if s.position < last_liked and s.chunk_id not in ratings
                 and (existing is None or s.chunk_id in existing)}
    negatives.update({i: weights.disliked for i, label in ratings.items() if label < 0})
    return LabelledQuery(item.query, {i: 1 for i in liked}, where=where, negatives=negatives,
                         unlabelled_weight=weights.unrated), lost


def chunk_ids(index, ids: Sequence[str]) -> set[str]:
    """The ids among ``ids`` that are chunks of ``index`` now."""
    from resrank_rag.index import point_id

    found: set[str] = set()
    ids = sorted(set(ids))
    for start in range(0, len(ids), 512):
        points = index.client.retrieve(index.collection, [point_id(i) for i in ids[start : start + 512]],
                                       with_payload=["chunk_id"])
        found |= {p.payload.get("chunk_id") for p in points}
    return found
