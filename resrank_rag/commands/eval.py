"""`resrank eval`: first stage + rerankers over a BEIR-layout folder; table, JSON and PNG."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from resrank_rag.commands.options import Precision
from resrank_rag.model import DEFAULT_MODEL

METRICS = ("nDCG@10", "R@100", "RR@10")


def report_table(report) -> Table:
    table = Table(title=f"{report.dataset} {report.split} (first stage {report.first_stage}, top-{report.depth}, {report.model})")
    for column in ("method", *METRICS, "queries", "mean ms", "p95 ms", "LM tokens/q", "encoded/q"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in report.results:
        def fmt(value, spec):
            return "-" if value is None else format(value, spec)

        table.add_row(
            row.method, *(f"{row.metrics[m]:.4f}" for m in METRICS), str(row.queries),
            fmt(row.latency_ms_mean, ".1f"), fmt(row.latency_ms_p95, ".1f"),
            fmt(row.lm_tokens_per_query, ",.0f"), fmt(row.encoded_passages_per_query, ".0f"),
        )
    return table


def eval_command(
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/).")],
    split: Annotated[str, typer.Option(help="qrels/<split>.tsv to evaluate.")] = "test",
    model: Annotated[str, typer.Option(help="ResRank checkpoint folder, packaged name or Hugging Face id.")] = DEFAULT_MODEL,
    first_stage: Annotated[str, typer.Option(help="shipped (runs/bm25.<split>.trec), bm25, dense or hybrid (RRF); default: shipped if present, else bm25.")] = "auto",
    also: Annotated[list[str], typer.Option("--also", help="More first stages to score alone (repeatable).")] = [],
    reranker: Annotated[list[str], typer.Option("--reranker", "-r", help="resrank (the checkpoint's default path), resrank-vectors (no texts), resrank-nolm (LM branch removed), features (the no-LM feature scorer), prior (cosine + rank prior), dense, fulltext-listwise, pointwise (repeatable); none: first stages only.")] = ["resrank", "resrank-nolm", "features", "dense"],
    stemmer: Annotated[str | None, typer.Option(help="PyStemmer language for BM25 (e.g. english); default none.")] = None,
    depth: Annotated[int, typer.Option(min=1, help="Candidates per query from the first stage.")] = 100,
    max_queries: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N judged queries.")] = None,
    passage_tokens: Annotated[int, typer.Option(min=8, help="Token budget per passage for the fulltext baselines.")] = 100,
    window: Annotated[int, typer.Option(min=1, max=26, help="fulltext-listwise window size.")] = 20,
    stride: Annotated[int, typer.Option(min=1, help="fulltext-listwise window stride.")] = 10,
    output: Annotated[Path, typer.Option(help="Folder for <dataset>-<split>.json and .png.")] = Path("eval-results"),
    precision: Precision = "auto",
) -> None:
    """Evaluate rerankers side by side on one split: nDCG@10, R@100, MRR@10, latency, LM tokens."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from resrank_rag import ResRank
    from resrank_rag.evaluation.beir import load_beir
    from resrank_rag.evaluation.harness import evaluate
    from resrank_rag.evaluation.plots import quality_vs_latency
    from resrank_rag.evaluation.rerankers import build_rerankers

    try:
        dataset = load_beir(data, split).limit_queries(max_queries)
        stage = first_stage if first_stage != "auto" else ("shipped" if dataset.shipped_run else "bm25")
        ranker = ResRank.from_pretrained(model, precision=precision)
        rerankers = build_rerankers([r for r in dict.fromkeys(reranker) if r != "none"], ranker, passage_tokens=passage_tokens, window=window, stride=stride)
        report = evaluate(ranker, dataset, split, stage, rerankers, depth, extra_first_stages=tuple(also), stemmer=stemmer)
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from None
    report.settings = {"precision": ranker.precision, "max_queries": max_queries, "stemmer": stemmer, "passage_tokens": passage_tokens, "window": window, "stride": stride}
    stem = output / f"{dataset.name}-{split}-{stage}"
    report.to_json(stem.with_suffix(".json"))
    quality_vs_latency(report, stem.with_suffix(".png"))
    console = Console(width=None if sys.stdout.isatty() else 160)  # logs get the full table
    console.print(report_table(report))
    for test in report.significance:
        console.print(
            f"{test['a']} vs {test['b']}: nDCG@10 {test['mean_difference']:+.4f} over {test['queries']} queries "
            f"({test['wins']} better, {test['losses']} worse); paired t-test p = {test['p_ttest']:.4f}, "
            f"randomisation p = {test['p_randomisation']:.4f}"
        )
    console.print(default_path_note(ranker), markup=False, highlight=False)
    console.print(f"Wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")


def default_path_note(model) -> str:
    """What ``resrank`` means for this checkpoint: the path its default rerank runs, and why."""
    if model.runs_lm:
        return (f"Note: {model.name} runs its reranker LM by default (resrank = LM on; resrank-nolm = the same checkpoint "
                "without it; features = the no-LM feature scorer). The LM earns its forward pass only where resrank beats both.")
    kind = "the no-LM feature scorer (cosine, rank prior, lexical features)" if model.linear_scorer is not None else "cosine plus its rank prior"
    return (f"Note: {model.name} runs no LM by default: resrank is {kind}, so resrank, resrank-nolm "
            "(and features, for this checkpoint) are one ranking. `resrank adapt` turns the LM on for a collection.")
