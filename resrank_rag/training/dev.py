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
        """nDCG@10 of the model (``ndcg@10``), of the same model without its LM branch (``nolm_ndcg@10``:
        cosine plus its rank prior) and of encoder cosine (``dense_ndcg@10``), over the same candidates."""
        import torch

        qids = list(self.candidates)
        queries = [self.dataset.queries[q] for q in qids]
        texts = [[self.dataset.corpus[d] for d in self.candidates[q]] for q in qids]
        vectors = [passage_vectors(t) for t in texts]
        query_vectors = model.encode_queries(queries)
        reranked = model.rerank_batch(queries, texts, vectors=vectors, query_vectors=query_vectors, batch_size=batch_size)
        model_run = {q: [(self.candidates[q][r.index], r.score) for r in results] for q, results in zip(qids, reranked)}
        with torch.no_grad():
            nolm = model.scores_without_lm(torch.from_numpy(np.asarray(query_vectors)), [torch.from_numpy(v) for v in vectors])
        runs = {
            "ndcg@10": model_run,
            "nolm_ndcg@10": {q: list(zip(self.candidates[q], s.tolist())) for q, s in zip(qids, nolm)},
            "dense_ndcg@10": {
                q: [(d, float(s)) for d, s in zip(self.candidates[q], vecs @ qv)]
                for q, vecs, qv in zip(qids, vectors, np.asarray(query_vectors))
            },
        }
        return {key: quality(self.qrels, run)["nDCG@10"] for key, run in runs.items()}
