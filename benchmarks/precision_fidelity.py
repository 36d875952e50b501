"""Does a reduced precision keep ResRank's ranking? Each precision against fp32 on BEIR folders.

For every dataset: one first stage (the shipped BM25 run if present, else BM25), its top-``depth``
reranked by the same checkpoint at fp32 and at each precision, over the same stored vectors (the
encoder is fp32 at every precision). Prints, per precision: nDCG@10 and its shift from fp32, the mean
Kendall tau of the full rankings, the share of queries with the same top 10, mean rerank ms; then
the largest shift per precision, the number ``MEASURED_NDCG_SHIFT`` in resrank_rag/precision.py takes.

    python benchmarks/precision_fidelity.py --model CKPT --data ../shared/data/trec-dl-2020 --data ../shared/data/scifact

Use a checkpoint whose LM branch is non-zero (residual heads trained): with zero heads every precision
ranks alike and the measurement says nothing. Commands and tables: docs/precision.md.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from resrank_rag import ResRank
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.fidelity import compare_to_fp32
from resrank_rag.evaluation.harness import rerank_run, run_first_stage
from resrank_rag.evaluation.rerankers import ResRankReranker
from resrank_rag.precision import FIDELITY_BAR, check_precision


def lm_branch_is_zero(model: ResRank) -> bool:
    """True when the residual heads are all zero, so the reranker LM cannot change any score."""
    return all(not head.weight.detach().any() and not head.bias.detach().any() for head in (model.passage_head, model.query_head))


def table(name: str, rows) -> Table:
    out = Table(title=f"{name}: each precision against fp32 over the same candidates")
    for column in ("precision", "nDCG@10", "shift", "Kendall tau", "same top 10", "mean ms", f"|shift| <= {FIDELITY_BAR}"):
        out.add_column(column, justify="left" if column == "precision" else "right")
    for row in rows:
        ms = "-" if row.latency_ms_mean is None else f"{row.latency_ms_mean:.1f}"
        out.add_row(row.precision, f"{row.ndcg10:.4f}", f"{row.ndcg10_shift:+.4f}", f"{row.kendall_tau:.4f}",
                    f"{row.same_top10:.1%}", ms, "yes" if row.keeps_ranking else "NO")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", required=True, help="BEIR folder (repeatable)")
    parser.add_argument("--model", required=True, help="checkpoint whose LM branch is non-zero")
    parser.add_argument("--precision", action="append", default=None, help="precision to compare with fp32 (repeatable; default bf16 and int8)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--first-stage", default="auto", help="shipped, bm25, dense or hybrid; auto: shipped if present, else bm25")
    parser.add_argument("--stemmer", default=None)
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--embedding-cache", default=None, help="EmbeddingCache SQLite file (default: the user cache)")
    parser.add_argument("--output", type=Path, default=Path("fidelity-results") / "precision_fidelity.json")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    precisions = ["fp32", *dict.fromkeys(check_precision(p) for p in (args.precision or ["bf16", "int8"]) if p != "fp32")]
    models = {p: ResRank.from_pretrained(args.model, precision=p) for p in precisions}
    console = Console(width=None if os.isatty(1) else 160)
    console.print(f"precisions: {', '.join(f'{p} -> {m.precision}' for p, m in models.items())}")
    if lm_branch_is_zero(models["fp32"]):
        console.print("[bold red]warning:[/] this checkpoint's residual heads are zero, so every precision ranks alike; "
                      "use a checkpoint with a trained LM branch")
    cache = EmbeddingCache(models["fp32"], args.embedding_cache)
    report = {"model": args.model, "precisions": precisions, "datasets": {}}
    for folder in args.data:
        dataset = load_beir(folder, args.split).limit_queries(args.max_queries)
        stage = args.first_stage if args.first_stage != "auto" else ("shipped" if dataset.shipped_run else "bm25")
        candidates = run_first_stage(stage, models["fp32"], dataset, cache, args.depth, args.stemmer)
        needed = sorted({doc for hits in candidates.values() for doc, _ in hits})
        vectors = dict(zip(needed, cache.encode([dataset.corpus[d] for d in needed], show_progress_bar=True)))
        runs, latency = {}, {}
        for precision, model in models.items():
            runs[precision], result = rerank_run(ResRankReranker(model, f"resrank [{precision}]"), dataset, candidates, vectors)
            latency[precision] = result.latency_ms_mean
        rows = compare_to_fp32(dataset.qrels, runs, latency)
        name = f"{dataset.name} {args.split} ({stage} top-{args.depth})"
        console.print(table(name, rows))
        report["datasets"][name] = [asdict(row) | {"keeps_ranking": row.keeps_ranking} for row in rows]
    shifts = {p: max(abs(row["ndcg10_shift"]) for rows in report["datasets"].values() for row in rows if row["precision"] == p)
              for p in precisions if p != "fp32"}
    report["largest_ndcg10_shift"] = shifts
    console.print(f"largest |nDCG@10 shift| per precision (MEASURED_NDCG_SHIFT in resrank_rag/precision.py): "
                  + ", ".join(f"{p}: {s:.4f}{'' if s <= FIDELITY_BAR else ' (over the bar)'}" for p, s in shifts.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
