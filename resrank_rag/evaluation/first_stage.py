"""First-stage retrieval: the shipped run, BM25 (bm25s), dense brute force, or reciprocal-rank fusion."""

from __future__ import annotations

import numpy as np

from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation.beir import BeirDataset, Run

FIRST_STAGES = ("shipped", "bm25", "dense", "hybrid")


def shipped(dataset: BeirDataset, k: int = 100) -> Run:
    """The run that came with the data (runs/bm25.<split>.trec), cut at ``k``."""
    if dataset.shipped_run is None:
        raise ValueError(f"{dataset.name} has no runs/bm25.<split>.trec; pick --first-stage bm25, dense or hybrid")
    return {qid: dataset.shipped_run.get(qid, [])[:k] for qid in dataset.queries}


def bm25(dataset: BeirDataset, k: int = 100, stemmer: str | None = None) -> Run:
    """BM25 over the corpus with bm25s and English stopwords; ``stemmer`` names a PyStemmer (Snowball)
    language such as ``"english"``. No stemming by default: that is how the reference figures were made."""
    import bm25s

    stem = None
    if stemmer:
        import Stemmer

        stem = Stemmer.Stemmer(stemmer).stemWords
    doc_ids = list(dataset.corpus)
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([dataset.corpus[d] for d in doc_ids], stopwords="en", stemmer=stem, show_progress=False),
        show_progress=False,
    )
    qids = list(dataset.queries)
    tokens = bm25s.tokenize([dataset.queries[q] for q in qids], stopwords="en", stemmer=stem, show_progress=False)
    hits, scores = retriever.retrieve(tokens, k=min(k, len(doc_ids)), show_progress=False)
    return {
        qid: [(doc_ids[int(i)], float(s)) for i, s in zip(hits[row], scores[row]) if s > 0]
        for row, qid in enumerate(qids)
    }


def corpus_vectors(cache: EmbeddingCache, dataset: BeirDataset, show_progress_bar: bool | None = True) -> dict[str, np.ndarray]:
    """Encoder vectors of the whole corpus, through the cache (a second run encodes nothing)."""
    doc_ids = list(dataset.corpus)
    vectors = cache.encode([dataset.corpus[d] for d in doc_ids], show_progress_bar=show_progress_bar)
    return dict(zip(doc_ids, vectors))


def dense(model, dataset: BeirDataset, vectors: dict[str, np.ndarray], k: int = 100) -> Run:
    """Exact cosine search of every query over the corpus vectors (what a vector store returns)."""
    doc_ids = list(vectors)
    matrix = np.stack([vectors[d] for d in doc_ids])
    qids = list(dataset.queries)
    scores = model.encode_queries([dataset.queries[q] for q in qids]) @ matrix.T
    run = {}
    for row, qid in enumerate(qids):
        top = np.argsort(-scores[row], kind="stable")[:k]
        run[qid] = [(doc_ids[i], float(scores[row, i])) for i in top]
    return run


def reciprocal_rank_fusion(runs: list[Run], k: int = 100, constant: int = 60) -> Run:
    """RRF: score(d) = sum over runs of 1 / (constant + rank of d), rank counted from 1."""
    fused: Run = {}
    for qid in {q for run in runs for q in run}:
        totals: dict[str, float] = {}
        for run in runs:
            for rank, (doc, _) in enumerate(run.get(qid, []), 1):
                totals[doc] = totals.get(doc, 0.0) + 1.0 / (constant + rank)
        fused[qid] = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:k]
    return fused
