"""How far a reduced precision moves rankings from fp32: nDCG@10, Kendall tau of full rankings, same top 10."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

from resrank_rag.evaluation.beir import Run
from resrank_rag.evaluation.metrics import quality
from resrank_rag.precision import FIDELITY_BAR


@dataclass
class FidelityRow:
    """One precision on one dataset, against the fp32 run over the same candidates."""

    precision: str
    ndcg10: float
    ndcg10_shift: float
    """nDCG@10 minus fp32's nDCG@10."""
    kendall_tau: float
    """Mean over queries of Kendall's tau-b between this ranking and fp32's, over all candidates."""
    same_top10: float
    """Share of queries whose top 10 (same passages, same order) equals fp32's."""
    queries: int
    latency_ms_mean: float | None = None

    @property
    def keeps_ranking(self) -> bool:
        return abs(self.ndcg10_shift) <= FIDELITY_BAR


def ranking_tau(reference: list[tuple[str, float]], other: list[tuple[str, float]]) -> float:
    """Kendall's tau-b between two scored rankings of the same candidates (1.0 for fewer than two)."""
    if set(d for d, _ in reference) != set(d for d, _ in other):
        raise ValueError("the two rankings must hold the same candidates")
    if len(reference) < 2:
        return 1.0
    docs = [d for d, _ in reference]
    mine = dict(other)
    tau = kendalltau([s for _, s in reference], [mine[d] for d in docs]).statistic
    return 1.0 if np.isnan(tau) else float(tau)  # NaN: both rankings are all ties


def same_top(reference: list[tuple[str, float]], other: list[tuple[str, float]], n: int = 10) -> bool:
    """Whether both rankings (best first) start with the same ``n`` passages in the same order."""
    return [d for d, _ in reference[:n]] == [d for d, _ in other[:n]]


def compare_to_fp32(qrels: dict[str, dict[str, int]], runs: dict[str, Run], latency_ms: dict[str, float] | None = None) -> list[FidelityRow]:
    """One row per precision in ``runs`` (which must hold ``fp32``), over the queries fp32 ranked."""
    if "fp32" not in runs:
        raise ValueError("runs must include the fp32 reference")
    reference = runs["fp32"]
    queries = [q for q, hits in reference.items() if hits]
    base = quality(qrels, reference)["nDCG@10"]
    rows = []
    for precision, run in runs.items():
        ndcg = quality(qrels, run)["nDCG@10"]
        taus = [ranking_tau(reference[q], run[q]) for q in queries]
        tops = [same_top(reference[q], run[q]) for q in queries]
        rows.append(FidelityRow(
            precision, ndcg, ndcg - base, float(np.mean(taus)) if taus else 1.0, float(np.mean(tops)) if tops else 1.0,
            len(queries), (latency_ms or {}).get(precision),
        ))
    return rows
