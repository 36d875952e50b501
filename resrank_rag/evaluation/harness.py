"""Run a first stage and several rerankers over one BEIR split; measure quality, latency and cost."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation import first_stage as stages
from resrank_rag.evaluation.beir import BeirDataset, Run
from resrank_rag.evaluation.metrics import paired_test, per_query, quality

COMPARISONS = (("resrank", "resrank-nolm"), ("resrank", "features"), ("resrank", "prior"), ("features", "prior"),
               ("resrank-vectors", "resrank-nolm"), ("resrank", "resrank-vectors"), ("resrank", "dense"))
"""Reranker pairs whose per-query nDCG@10 gets a paired significance test when both are evaluated."""


@dataclass
class MethodResult:
    """One row of the report: a first stage alone or first stage + reranker."""

    method: str
    metrics: dict[str, float]
    queries: int
    latency_ms_mean: float | None = None
    latency_ms_p95: float | None = None
    lm_tokens_per_query: float | None = None
    encoded_passages_per_query: float | None = None


@dataclass
class EvalReport:
    dataset: str
    split: str
    first_stage: str
    depth: int
    model: str
    results: list[MethodResult] = field(default_factory=list)
    significance: list[dict] = field(default_factory=list)
    """Paired tests over queries (nDCG@10), one per pair in ``COMPARISONS`` that was evaluated."""
    settings: dict = field(default_factory=dict)

    def to_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


def run_first_stage(name: str, model, dataset: BeirDataset, cache: EmbeddingCache | None, depth: int, stemmer: str | None = None) -> Run:
    """The named first stage's top-``depth`` per query."""
    if name == "shipped":
        return stages.shipped(dataset, depth)
    if name == "bm25":
        return stages.bm25(dataset, depth, stemmer)
    vectors = stages.corpus_vectors(cache, dataset)
    if name == "dense":
        return stages.dense(model, dataset, vectors, depth)
    if name == "hybrid":
        return stages.reciprocal_rank_fusion([stages.bm25(dataset, depth, stemmer), stages.dense(model, dataset, vectors, depth)], depth)
    raise ValueError(f"unknown first stage {name!r}; choose from {', '.join(stages.FIRST_STAGES)}")


def rerank_run(reranker, dataset: BeirDataset, candidates: Run, vectors: dict[str, np.ndarray] | None) -> tuple[Run, MethodResult]:
    """Rerank every query's candidates; time each call (query encoding included, stored vectors excluded).

    One untimed warm-up call first, so lazily loaded weights do not land in the first query's latency."""
    run: Run = {}
    latencies, tokens, encoded = [], [], []
    warm = next((q for q in dataset.queries if candidates.get(q)), None)
    if warm is not None:
        docs = [doc for doc, _ in candidates[warm][:2]]
        reranker.rerank(dataset.queries[warm], [dataset.corpus[d] for d in docs], None if vectors is None else np.stack([vectors[d] for d in docs]))
    for qid in tqdm(list(dataset.queries), desc=f"Reranking ({reranker.name})", unit="query"):
        doc_ids = [doc for doc, _ in candidates.get(qid, [])]
        if not doc_ids:
            run[qid] = []
            continue
        texts = [dataset.corpus[d] for d in doc_ids]
        stored = None if vectors is None else np.stack([vectors[d] for d in doc_ids])
        start = time.perf_counter()
        out = reranker.rerank(dataset.queries[qid], texts, stored)
        latencies.append((time.perf_counter() - start) * 1000)
        tokens.append(out.lm_tokens)
        encoded.append(out.encoded_passages)
        run[qid] = sorted(zip(doc_ids, out.scores), key=lambda item: -item[1])
    result = MethodResult(
        reranker.name,
        quality(dataset.qrels, run),
        len(latencies),
        float(np.mean(latencies)) if latencies else None,
        float(np.percentile(latencies, 95)) if latencies else None,
        float(np.mean(tokens)) if tokens else None,
        float(np.mean(encoded)) if encoded else None,
    )
    return run, result


def evaluate(
    model,
    dataset: BeirDataset,
    split: str,
    first_stage: str,
    rerankers: list,
    depth: int = 100,
    cache: EmbeddingCache | None = None,
    extra_first_stages: tuple[str, ...] = (),
    stemmer: str | None = None,
) -> EvalReport:
    """First stage(s) alone, then each reranker over the main first stage's top-``depth``.

    Passage vectors for ``resrank`` and ``dense`` come from ``cache`` (encoded once per model and text,
    before timing starts), as a vector store would return them.
    """
    if cache is None and (first_stage in ("dense", "hybrid") or any(r.uses_vectors for r in rerankers)):
        cache = EmbeddingCache(model)
    report = EvalReport(dataset.name, split, first_stage, depth, getattr(model, "name", "?"))
    for name in dict.fromkeys((first_stage, *extra_first_stages)):
        run = run_first_stage(name, model, dataset, cache, depth, stemmer)
        report.results.append(MethodResult(name, quality(dataset.qrels, run), len(dataset.queries)))
        if name == first_stage:
            candidates = run
    vectors = None
    if any(r.uses_vectors for r in rerankers):
        needed = sorted({doc for hits in candidates.values() for doc, _ in hits})
        vectors = dict(zip(needed, cache.encode([dataset.corpus[d] for d in needed], show_progress_bar=True)))
    per_method = {}
    for reranker in rerankers:
        run, result = rerank_run(reranker, dataset, candidates, vectors if reranker.uses_vectors else None)
        result.method = f"{first_stage} + {reranker.name}"
        report.results.append(result)
        per_method[reranker.name] = per_query(dataset.qrels, run)
    for a, b in COMPARISONS:
        if a in per_method and b in per_method:
            report.significance.append({"a": a, "b": b, "measure": "nDCG@10", **paired_test(per_method[a], per_method[b])})
    return report
