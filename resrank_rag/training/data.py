"""Training lists from BEIR-layout folders: graded positives, judged and mined hard negatives, weighted mix."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resrank_rag.evaluation.beir import BeirDataset, load_beir
from resrank_rag.evaluation.first_stage import reciprocal_rank_fusion
from resrank_rag.training.config import DatasetSpec, is_ranking_source

VectorFn = Callable[[list[str]], np.ndarray]
"""Texts -> (N, dim) L2-normalised passage vectors (used to mine negatives with the current encoder)."""


@dataclass
class TrainingList:
    """One query with its candidate list and graded labels (0 = not relevant), in feeding order."""

    dataset: str
    query_id: str
    query: str
    doc_ids: list[str]
    texts: list[str]
    labels: list[int]
    weights: list[float] | None = None
    """Per candidate, how much its pairs count as the less relevant side (RankNet only); None: all 1."""


def select_queries(dataset: BeirDataset, spec: DatasetSpec) -> list[str]:
    """Judged queries with at least one relevant passage in the corpus, cut to ``query_range``/``max_queries``."""
    usable = [q for q in dataset.queries if any(g > 0 and d in dataset.corpus for d, g in dataset.qrels[q].items())]
    start, end = spec.query_range
    chosen = usable[int(round(start * len(usable))) : int(round(end * len(usable)))]
    return chosen[: spec.max_queries] if spec.max_queries else chosen


class Bm25Miner:
    """BM25 (bm25s, English stopwords and stemming) over one corpus, built on first use."""

    def __init__(self, dataset: BeirDataset):
        self.dataset = dataset
        self._retriever = None
        self._doc_ids: list[str] = []

    def _tokenize(self, texts: list[str]):
        import bm25s
        import Stemmer

        return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english").stemWords, show_progress=False)

    def top(self, query: str, k: int) -> list[str]:
        import bm25s

        if self._retriever is None:
            self._doc_ids = list(self.dataset.corpus)
            self._retriever = bm25s.BM25()
            self._retriever.index(self._tokenize([self.dataset.corpus[d] for d in self._doc_ids]), show_progress=False)
        hits, scores = self._retriever.retrieve(self._tokenize([query]), k=min(k, len(self._doc_ids)), show_progress=False)
        return [self._doc_ids[int(i)] for i, s in zip(hits[0], scores[0]) if s > 0]


class EncoderMiner:
    """Nearest passages by cosine with the current encoder (corpus vectors computed once, via ``vectors``)."""

    def __init__(self, dataset: BeirDataset, passage_vectors: VectorFn, query_vectors: VectorFn):
        self.dataset = dataset
        self.passage_vectors = passage_vectors
        self.query_vectors = query_vectors
        self._matrix: np.ndarray | None = None
        self._doc_ids: list[str] = []

    def top(self, query: str, k: int) -> list[str]:
        if self._matrix is None:
            self._doc_ids = list(self.dataset.corpus)
            self._matrix = self.passage_vectors([self.dataset.corpus[d] for d in self._doc_ids])
        scores = self._matrix @ self.query_vectors([query])[0]
        return [self._doc_ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


class ListBuilder:
    """Builds the candidate list of one query: its relevant passages plus negatives from ``spec.negatives``."""

    def __init__(self, dataset: BeirDataset, spec: DatasetSpec, list_size: int, max_positives: int = 8,
                 encoder_vectors: tuple[VectorFn, VectorFn] | None = None):
        needs_encoder = bool({"encoder", "hybrid"} & set(spec.negatives))
        if needs_encoder and encoder_vectors is None:
            raise ValueError(f"{spec.path}: 'encoder' and 'hybrid' negatives need the model's vector functions")
        self.dataset = dataset
        self.spec = spec
        self.list_size = list_size
        self.max_positives = max_positives
        self.bm25 = Bm25Miner(dataset) if {"bm25", "hybrid"} & set(spec.negatives) else None
        self.encoder = EncoderMiner(dataset, *encoder_vectors) if needs_encoder else None
        self.query_ids = select_queries(dataset, spec)
        self.ranked: dict[str, list[str]] = {}
        if spec.list_order == "first_stage":
            source = next(n for n in spec.negatives if is_ranking_source(n))
            for qid in self.query_ids:
                top = self._ranking(qid, source)[:list_size]
                if any(dataset.qrels[qid].get(d, 0) > 0 for d in top):
                    self.ranked[qid] = top
            self.query_ids = list(self.ranked)
        if not self.query_ids:
            where = " and in its first-stage top list" if spec.list_order == "first_stage" else ""
            raise ValueError(f"{spec.path} split {spec.split!r} has no judged query with a relevant passage in range{where}")

    def _ranking(self, query_id: str, source: str) -> list[str]:
        query = self.dataset.queries[query_id]
        if source == "run":
            found = [d for d, _ in (self.dataset.shipped_run or {}).get(query_id, [])]
        elif source.startswith("run:"):
            found = [d for d, _ in self.dataset.named_run(source[4:]).get(query_id, [])]
        elif source == "bm25":
            found = self.bm25.top(query, 2 * self.list_size)
        elif source == "encoder":
            found = self.encoder.top(query, 2 * self.list_size)
        else:
            runs = [{query_id: [(d, 0.0) for d in miner.top(query, 2 * self.list_size)]} for miner in (self.bm25, self.encoder)]
            found = [d for d, _ in reciprocal_rank_fusion(runs, 2 * self.list_size)[query_id]]
        return [d for d in found if d in self.dataset.corpus]

    def _negatives(self, query_id: str, source: str, rng: random.Random) -> list[str]:
        judged = self.dataset.qrels[query_id]
        if source == "judged":
            found = [d for d, g in judged.items() if g <= 0]
            rng.shuffle(found)
        elif is_ranking_source(source):
            found = self._ranking(query_id, source)
        else:
            found = rng.sample(list(self.dataset.corpus), min(2 * self.list_size, len(self.dataset.corpus)))
        return [d for d in found if judged.get(d, 0) <= 0 and d in self.dataset.corpus]

    def build(self, query_id: str, rng: random.Random) -> TrainingList:
        """Relevant passages (highest grades first, at most ``max_positives``), then negatives in source
        order until ``list_size``; the list is shuffled so that position carries no label information.
        With ``list_order: first_stage``: the first-stage top list as ranked."""
        if self.spec.list_order == "first_stage":
            return self._list(query_id, self.ranked[query_id])
        judged = self.dataset.qrels[query_id]
        positives = [d for d, g in judged.items() if g > 0 and d in self.dataset.corpus]
        rng.shuffle(positives)
        positives.sort(key=lambda d: -judged[d])
        chosen = positives[: min(self.max_positives, self.list_size - 1)]
        seen = set(chosen)
        for source in self.spec.negatives:
            if len(chosen) >= self.list_size:
                break
            for doc in self._negatives(query_id, source, rng):
                if doc not in seen:
                    seen.add(doc)
                    chosen.append(doc)
                    if len(chosen) >= self.list_size:
                        break
        rng.shuffle(chosen)
        return self._list(query_id, chosen)

    def _list(self, query_id: str, doc_ids: list[str]) -> TrainingList:
        judged = self.dataset.qrels[query_id]
        return TrainingList(
            self.dataset.name, query_id, self.dataset.queries[query_id], doc_ids,
            [self.dataset.corpus[d] for d in doc_ids], [max(0, int(judged.get(d, 0))) for d in doc_ids],
        )


class TrainingMix:
    """Weighted mix of list builders; ``sample(step)`` is a pure function of (seed, step, process)."""

    def __init__(self, builders: list[ListBuilder], seed: int = 0):
        if not builders:
            raise ValueError("TrainingMix needs at least one dataset")
        self.builders = builders
        self.weights = [b.spec.weight for b in builders]
        self.seed = seed

    def sample(self, step: int, count: int, process_index: int = 0) -> list[TrainingList]:
        rng = random.Random(f"{self.seed}:{step}:{process_index}")
        lists = []
        for _ in range(count):
            builder = rng.choices(self.builders, weights=self.weights)[0]
            lists.append(builder.build(rng.choice(builder.query_ids), rng))
        return lists


def load_mix(specs: list[DatasetSpec], list_size: int, max_positives: int = 8, seed: int = 0,
             base_dir: str | Path = ".", encoder_vectors: tuple[VectorFn, VectorFn] | None = None) -> TrainingMix:
    """Load every dataset split (paths relative to ``base_dir``) into one weighted mix."""
    builders = [
        ListBuilder(load_beir(Path(base_dir) / spec.path, spec.split), spec, list_size, max_positives, encoder_vectors)
        for spec in specs
    ]
    return TrainingMix(builders, seed)
