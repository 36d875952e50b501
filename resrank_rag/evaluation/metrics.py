"""Retrieval quality with ir-measures: nDCG@10, Recall@100, MRR@10 (RR@10)."""

from __future__ import annotations

import ir_measures
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
