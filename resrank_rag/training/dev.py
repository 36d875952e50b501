"""Dev evaluation during training: rerank fixed candidate lists, nDCG@10 (ir-measures) vs. dense cosine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.metrics import quality
from resrank_rag.training.config import DatasetSpec
from resrank_rag.training.data import Bm25Miner, VectorFn, select_queries

DEV_KEYS = {"model": "ndcg@10", "nolm": "nolm_ndcg@10", "dense": "dense_ndcg@10"}
"""What each run of ``rerank_runs`` is logged as during training."""


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
        qids = list(self.candidates)
        queries = [self.dataset.queries[q] for q in qids]
        texts = [[self.dataset.corpus[d] for d in self.candidates[q]] for q in qids]
        vectors = [passage_vectors(t) for t in texts]
        runs = rerank_runs(model, qids, queries, [self.candidates[q] for q in qids], texts, vectors,
                           model.encode_queries(queries), batch_size)
        return {DEV_KEYS[system]: quality(self.qrels, run)["nDCG@10"] for system, run in runs.items()}


def rerank_runs(model, qids: list[str], queries: list[str], candidates: list[list[str]], texts: list[list[str]],
                vectors: list[np.ndarray], query_vectors: np.ndarray, batch_size: int = 8,
                progress: bool = False) -> dict[str, dict]:
    """Runs over fixed candidate lists (in first-stage order) of the model (``model``), of the same model
    without its LM branch (``nolm``: cosine plus its rank prior and linear feature term) and of encoder
    cosine (``dense``)."""
    import torch
    from tqdm.auto import tqdm

    query_vectors = np.asarray(query_vectors)
    model_run = {}
    for start in tqdm(range(0, len(qids), 4 * batch_size), desc="Reranking", unit="batch", leave=False,
                      disable=not progress):
        chunk = slice(start, start + 4 * batch_size)
        reranked = model.rerank_batch(queries[chunk], texts[chunk], vectors=vectors[chunk],
                                      query_vectors=query_vectors[chunk], batch_size=batch_size)
        for q, docs, results in zip(qids[chunk], candidates[chunk], reranked):
            model_run[q] = [(docs[r.index], r.score) for r in results]
    with torch.no_grad():
        nolm = model.scores_without_lm(torch.from_numpy(query_vectors), [torch.from_numpy(v) for v in vectors],
                                       queries=queries, texts=texts)
    return {
        "model": model_run,
        "nolm": {q: list(zip(docs, s.tolist())) for q, docs, s in zip(qids, candidates, nolm)},
        "dense": {q: [(d, float(s)) for d, s in zip(docs, vecs @ qv)]
                   for q, docs, vecs, qv in zip(qids, candidates, vectors, query_vectors)},
    }
