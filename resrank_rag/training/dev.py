"""Dev evaluation during training: rerank fixed candidate lists, nDCG@10 (ir-measures) vs. dense cosine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.metrics import quality
from resrank_rag.training.config import DatasetSpec
from resrank_rag.training.data import Bm25Miner, VectorFn, select_queries


class DevSet:
    """Dev queries with their first-stage candidates: the shipped run's top ``depth``, else BM25's."""

    def __init__(self, spec: DatasetSpec, depth: int = 100, max_queries: int | None = None, base_dir: str | Path = "."):
        self.dataset = load_beir(Path(base_dir) / spec.path, spec.split)
        start, end = spec.query_range
        self.name = f"{self.dataset.name}-{spec.split}" + ("" if (start, end) == (0.0, 1.0) else f"[{start:g}:{end:g}]")
        self.query_ids = select_queries(self.dataset, spec)[:max_queries]
        miner = None if self.dataset.shipped_run else Bm25Miner(self.dataset)
        self.candidates = {
            qid: [d for d, _ in self.dataset.shipped_run.get(qid, [])][:depth] if miner is None
            else miner.top(self.dataset.queries[qid], depth)
            for qid in self.query_ids
        }
        self.candidates = {q: [d for d in docs if d in self.dataset.corpus] for q, docs in self.candidates.items() if docs}
        self.qrels = {q: self.dataset.qrels[q] for q in self.candidates}

    def evaluate(self, model, passage_vectors: VectorFn, batch_size: int = 8) -> dict[str, float]:
        """{"ndcg@10": reranked, "dense_ndcg@10": encoder cosine over the same candidates}."""
        qids = list(self.candidates)
        queries = [self.dataset.queries[q] for q in qids]
        vectors = [passage_vectors([self.dataset.corpus[d] for d in self.candidates[q]]) for q in qids]
        query_vectors = model.encode_queries(queries)
        reranked = model.rerank_batch(queries, [None] * len(qids), vectors=vectors, query_vectors=query_vectors, batch_size=batch_size)
        model_run = {q: [(self.candidates[q][r.index], r.score) for r in results] for q, results in zip(qids, reranked)}
        dense_run = {
            q: [(d, float(s)) for d, s in zip(self.candidates[q], vecs @ qv)]
            for q, vecs, qv in zip(qids, vectors, np.asarray(query_vectors))
        }
        return {"ndcg@10": quality(self.qrels, model_run)["nDCG@10"], "dense_ndcg@10": quality(self.qrels, dense_run)["nDCG@10"]}
