"""Candidate lists from a collection's own first stage, with their stored vectors: training lists and the held-out part."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from resrank_rag.access import Principal
from resrank_rag.adapt.queries import LabelledQuery
from resrank_rag.evaluation.metrics import per_query
from resrank_rag.training.data import TrainingList
from resrank_rag.training.dev import DEV_KEYS, rerank_runs

ADMIN = Principal.unrestricted_access("resrank-adapt")
"""Adaptation reads the whole collection, as indexing does: it is trusted back-office work."""


@dataclass
class RetrievedList:
    """One query's first-stage candidates (best first) with their stored vectors and labels."""

    query: LabelledQuery
    ids: list[str]
    texts: list[str]
    vectors: np.ndarray
    labels: list[int]
    query_vector: np.ndarray
    doc_ids: Sequence[str] = ()

    @property
    def qrels(self) -> dict[str, int]:
        """Judgements for evaluation: the labelled candidates, plus given ids the first stage missed."""
        judged = {i: g for i, g in zip(self.ids, self.labels) if g > 0}
        covered = set(self.ids) | set(self.doc_ids)
        return {**{i: g for i, g in self.query.relevant.items() if i not in covered and g > 0}, **judged}

    def training_list(self, size: int) -> TrainingList:
        query, weights = self.query, None
        if query.negatives or query.unlabelled_weight != 1.0:
            weights = [1.0 if label > 0 else query.negatives.get(i, query.unlabelled_weight)
                       for i, label in zip(self.ids[:size], self.labels[:size])]
        return TrainingList("collection", query.key, query.query, self.ids[:size], self.texts[:size],
                            self.labels[:size], weights)


class StoredVectors:
    """Passage vectors read back from the collection, by text: what training reads instead of an encoder.

    ``encode`` raises for a text the collection did not give, so nothing can be re-encoded by accident.
    """

    def __init__(self):
        self._by_text: dict[str, np.ndarray] = {}

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._by_text.update(zip(texts, np.asarray(vectors, dtype=np.float32)))

    def encode(self, texts: Sequence[str], **_) -> np.ndarray:
        missing = [t for t in texts if t not in self._by_text]
        if missing:
            raise KeyError(f"{len(missing)} passage text(s) have no stored vector, e.g. {missing[0][:60]!r}")
        dim = next(iter(self._by_text.values())).shape[0] if self._by_text else 0
        return np.stack([self._by_text[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)


def first_stage_lists(index, model, queries: list[LabelledQuery], depth: int, first_stage: str,
                      vectors: StoredVectors) -> list[RetrievedList]:
    """Each query's top ``depth`` from the collection (dense or hybrid, as search runs it), in that order,
    labelled from its relevant ids; the stored vectors go into ``vectors``. Queries are encoded once."""
    query_vectors = model.encode_queries([q.query for q in queries], show_progress_bar=len(queries) > 128)
    lists = []
    for query, query_vector in tqdm(list(zip(queries, query_vectors)), desc="First stage", unit="query",
                                    disable=len(queries) < 64):
        hits, stored = index.retrieve_with_vectors(query.query, k=depth, first_stage=first_stage,
                                                   query_vector=query_vector, principal=ADMIN)
        labels = [max(query.relevant.get(h.id, 0), query.relevant.get(h.doc_id, 0)) for h in hits]
        vectors.add([h.text for h in hits], stored)
        lists.append(RetrievedList(query, [h.id for h in hits], [h.text for h in hits], stored, labels,
                                   query_vector, [h.doc_id for h in hits]))
    return lists


def split(queries: list[LabelledQuery], holdout: float, minimum: int) -> tuple[list[LabelledQuery], list[LabelledQuery]]:
    """(train, held-out): the held-out part is the ``holdout`` share (at least ``minimum``) with the lowest
    hash of their text, so it stays the same when queries are reordered or added, and repeats of a
    question never fall on both sides."""
    texts = sorted({q.query.strip() for q in queries}, key=lambda t: hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest())
    held = set(texts[: max(minimum, round(holdout * len(texts)))])
    return [q for q in queries if q.query.strip() not in held], [q for q in queries if q.query.strip() in held]


class FixedLists:
    """A ``TrainingMix`` source of ready lists (first-stage order, labels from the queries): no mining."""

    def __init__(self, lists: list[TrainingList], spec):
        self.spec = spec
        self.lists = {item.query_id: item for item in lists}
        self.query_ids = list(self.lists)

    def build(self, query_id: str, rng=None) -> TrainingList:
        return self.lists[query_id]


class HeldOut:
    """The held-out queries over their first-stage top-``depth``: evaluated like a ``DevSet`` during training."""

    name = "held-out"

    def __init__(self, lists: list[RetrievedList]):
        self.lists = lists
        self.qrels = {item.query.key: item.qrels for item in lists}
        self._reuse: dict | None = None
        self.best: tuple[float, dict] | None = None
        """(nDCG@10, runs) of the best model this object evaluated, as the trainer picks ``best/``."""

    def runs(self, model) -> dict[str, dict]:
        """Runs of ``model``, of it with the LM branch removed, and of cosine (``rerank_runs``)."""
        model.eval()
        items = self.lists
        return rerank_runs(model, [i.query.key for i in items], [i.query.query for i in items], [i.ids for i in items],
                           [i.texts for i in items], [i.vectors for i in items],
                           np.stack([i.query_vector for i in items]), progress=len(items) > 32)

    def reuse_once(self, runs: dict[str, dict]) -> None:
        """Answer the next ``evaluate`` with these runs (the starting model's, computed already)."""
        self._reuse = runs

    def evaluate(self, model, passage_vectors=None) -> dict[str, float]:
        runs, self._reuse = self._reuse or self.runs(model), None
        metrics = {DEV_KEYS[system]: float(np.mean(list(self.values(run).values()))) for system, run in runs.items()}
        if self.best is None or metrics["ndcg@10"] > self.best[0]:
            self.best = (metrics["ndcg@10"], runs)
        return metrics

    def values(self, run: dict, measure: str = "nDCG@10") -> dict[str, float]:
        """Per held-out query ``measure`` of a run."""
        return per_query(self.qrels, run, measure)
