"""Retrieval quality with ir-measures: nDCG@10, Recall@100, MRR@10 (RR@10)."""

from __future__ import annotations

import ir_measures
import numpy as np
from ir_measures import R, RR, nDCG

from resrank_rag.evaluation.beir import Run

MEASURES = {"nDCG@10": nDCG @ 10, "R@100": R @ 100, "RR@10": RR @ 10}


def quality(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, float]:
    """Mean of each measure over the judged queries (a query missing from the run counts as 0)."""
    scored = {qid: {doc: float(score) for doc, score in run.get(qid, [])} for qid in qrels}
    totals = {name: 0.0 for name in MEASURES}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, scored):
        name = next(n for n, m in MEASURES.items() if m == metric.measure)
        totals[name] += metric.value
    return {name: total / len(qrels) if qrels else 0.0 for name, total in totals.items()}


def per_query(qrels: dict[str, dict[str, int]], run: Run, measure: str = "nDCG@10") -> dict[str, float]:
    """``measure`` for every judged query (0 for a query missing from the run)."""
    scored = {qid: {doc: float(score) for doc, score in run.get(qid, [])} for qid in qrels}
    values = {qid: 0.0 for qid in qrels}
    for metric in ir_measures.iter_calc([MEASURES[measure]], qrels, scored):
        values[metric.query_id] = metric.value
    return values


def paired_test(a: dict[str, float], b: dict[str, float], resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Paired comparison of two systems' per-query values over their common queries: mean difference
    (a - b), the paired t-test's two-sided p and a sign-flip randomisation test's two-sided p (scipy)."""
    from scipy import stats

    queries = sorted(set(a) & set(b))
    if len(queries) < 2:
        raise ValueError("a paired test needs at least two common queries")
    x = np.array([a[q] for q in queries])
    y = np.array([b[q] for q in queries])
    diff = x - y
    if not diff.any():
        return {"queries": len(queries), "mean_difference": 0.0, "wins": 0, "losses": 0, "p_ttest": 1.0, "p_randomisation": 1.0}
    randomised = stats.permutation_test(
        (x, y), lambda u, v: np.mean(u - v), permutation_type="samples", n_resamples=resamples,
        alternative="two-sided", random_state=seed,
    )
    return {
        "queries": len(queries),
        "mean_difference": float(diff.mean()),
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
        "p_ttest": float(stats.ttest_rel(x, y).pvalue),
        "p_randomisation": float(randomised.pvalue),
    }


def set_mean_test(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], resamples: int = 10_000,
                  seed: int = 0) -> dict[str, float]:
    """Paired sign-flip randomisation test of the mean over sets of each set's mean (the "dev mean"):
    ``a[set][query]`` and ``b[set][query]`` per-query values; each query weighs 1 / (sets x its set's
    queries), so the statistic is exactly the difference of the two dev means. Two-sided p."""
    sets = sorted(set(a) & set(b))
    diffs, weights = [], []
    for name in sets:
        queries = sorted(set(a[name]) & set(b[name]))
        diffs += [a[name][q] - b[name][q] for q in queries]
        weights += [1.0 / (len(sets) * len(queries))] * len(queries)
    diff, weight = np.array(diffs), np.array(weights)
    observed = float((diff * weight).sum())
    rng = np.random.default_rng(seed)
    flips = rng.choice([-1.0, 1.0], size=(resamples, len(diff)))
    null = (flips * diff * weight).sum(axis=1)
    p = float((np.sum(np.abs(null) >= abs(observed) - 1e-12) + 1) / (resamples + 1))
    return {"sets": len(sets), "queries": len(diff), "mean_difference": observed, "wins": int((diff > 0).sum()),
            "losses": int((diff < 0).sum()), "p_randomisation": p if diff.any() else 1.0}
