"""`resrank bench`: rerank latency vs K at every precision, peak memory, first call, indexing throughput; table, JSON, PNG."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from resrank_rag.model import DEFAULT_MODEL

DEFAULT_PRECISIONS = ("fp32", "bf16", "int8")


def passages_and_query(data: Path, split: str, count: int) -> tuple[str, list[str]]:
    """The first judged query and ``count`` passages: its first-stage candidates, then other queries'."""
    from resrank_rag.evaluation.beir import load_beir

    dataset = load_beir(data, split)
    qid = next(iter(dataset.queries))
    ordered = [doc for doc, _ in (dataset.shipped_run or {}).get(qid, [])] + list(dataset.corpus)
    texts = [dataset.corpus[d] for d in dict.fromkeys(ordered)][:count]
    if len(texts) < count:
        raise typer.BadParameter(f"{data} holds only {len(texts)} passages; lower --k")
    return dataset.queries[qid], texts


def bench_tables(report) -> list[Table]:
    latency = Table(title="Rerank latency (median ms) vs candidates K, every precision in one interleaved run")
    latency.add_column("method [precision]")
    for k in report.ks:
        latency.add_column(f"K={k}", justify="right")
    for method, values in report.median_ms.items():
        latency.add_row(escape(method), *("-" if v is None else f"{v:,.1f}" for v in values))  # keep "[int8]" literal
    for label, values in report.ratios.items():
        latency.add_row(f"[italic]{escape(label)}", *("-" if v is None else f"{v:,.1f}x" for v in values))
    memory = Table(title=f"Fresh process per row, rerank at K={report.settings.get('memory_k')}: peak resident memory (VmHWM, MB) and call times")
    columns = ("method [precision]", "after load MB", "after rerank MB", "first call ms", "steady ms")
    for column in columns:
        memory.add_column(column, justify="left" if column == columns[0] else "right")
    for method, values in report.memory_mb.items():
        steady = values.get("steady ms")
        memory.add_row(escape(method), f"{values['after load']:,.0f}", f"{values['after rerank']:,.0f}",
                       f"{values['first call ms']:,.1f}", "-" if steady is None else f"{steady:,.1f}")
    speed = Table(title="Indexing throughput (passages/s, best of 2)")
    speed.add_column("encoder")
    speed.add_column("passages/s", justify="right")
    for label, value in report.throughput.items():
        speed.add_row(label, f"{value:.1f}")
    return [latency, memory, speed]


def done_when_lines(report) -> list[str]:
    """The issues' done-when figures, one line each: value, bar and whether this run met it."""
    lines = []
    for bar in report.bars:
        unit = " ms" if bar["name"].endswith("(ms)") else "x"
        value = "-" if bar["value"] is None else f"{bar['value']:,.3f}{unit}" if bar["value"] < 10 else f"{bar['value']:,.1f}{unit}"
        sign = ">=" if bar["higher_is_better"] else "<="
        verdict = {True: "met", False: "NOT met", None: "not measured"}[bar["met"]]
        lines.append(f"{bar['name']}: {value} ({bar['detail']}); bar {sign} {bar['bar']:g}{unit}: {verdict}")
    return lines


def bench_command(
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="BEIR-layout folder the passages and query come from.")],
    split: Annotated[str, typer.Option(help="Split whose first query is used.")] = "test",
    model: Annotated[str, typer.Option(help="ResRank checkpoint folder, packaged name or Hugging Face id.")] = DEFAULT_MODEL,
    k: Annotated[list[int], typer.Option("--k", help="Candidate counts (repeatable).")] = [10, 20, 50, 100, 200],
    repeats: Annotated[int, typer.Option(min=1, help="Timed calls per K for the ResRank methods.")] = 3,
    fulltext_repeats: Annotated[int, typer.Option(min=0, help="Timed calls per K for fulltext-listwise (slow).")] = 1,
    fulltext_max_k: Annotated[int | None, typer.Option(min=1, help="Time fulltext-listwise only up to this K (it is slow).")] = None,
    memory_k: Annotated[int | None, typer.Option(min=1, help="Candidates reranked in the memory probes (default: the largest K).")] = None,
    passage_tokens: Annotated[int, typer.Option(min=8, help="Token budget per passage for fulltext-listwise.")] = 100,
    index_passages: Annotated[int, typer.Option(min=1, help="Passages encoded for the throughput test.")] = 256,
    memory: Annotated[bool, typer.Option(help="Measure peak memory and the first call in one fresh process per method and precision.")] = True,
    output: Annotated[Path, typer.Option(help="Folder for bench.json and bench.png.")] = Path("bench-results"),
    precision: Annotated[list[str], typer.Option("--precision", help="Precisions to compare (repeatable): fp32, bf16, int8, auto (fp16 on CUDA only).")] = list(DEFAULT_PRECISIONS),
) -> None:
    """Latency vs K (ResRank on stored vectors, ResRank on texts, fulltext-listwise) at every precision
    side by side, peak memory and first call, throughput."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from resrank_rag.embedding_cache import EmbeddingCache
    from resrank_rag.evaluation import bench
    from resrank_rag.evaluation.plots import latency_vs_k
    from resrank_rag.precision import MEASURED_NDCG_SHIFT, MEASURED_ON, auto_precision, native_precisions, resolve_precision

    try:
        for p in precision:
            resolve_precision(p, "cpu")
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--precision") from None
    ks = sorted(set(k))
    query, texts = passages_and_query(data, split, max(max(ks), index_passages))
    setups = list({s.precision: s for s in (bench.load_setup(model, p, passage_tokens) for p in dict.fromkeys(precision))}.values())
    precisions = [s.precision for s in setups]  # auto as loaded: what it picked on this machine
    ranker = setups[0].model
    fp32 = next((s.model for s in setups if s.precision == "fp32"), None)
    vectors = EmbeddingCache(ranker).encode(texts[: max(ks)], show_progress_bar=True)  # fp32 encoder at every precision
    medians, runs = bench.latency_vs_k(setups, query, texts, vectors, ks, repeats, fulltext_repeats, fulltext_max_k)
    report = bench.BenchReport(ks, medians, runs, bench.ratios(medians, precisions), precisions=precisions)
    report.throughput = bench.indexing_throughput(ranker, texts[:index_passages])
    if memory:
        probe_k = memory_k or max(ks)
        report.memory_mb = bench.peak_memory(model, query, texts[:probe_k], vectors[:probe_k], passage_tokens, precisions)
    report.settings = {"data": str(data), "query": query, "passage_tokens": passage_tokens, "repeats": repeats, "fulltext_repeats": fulltext_repeats,
                       "fulltext_max_k": fulltext_max_k, "memory_k": memory_k or max(ks), "threads": torch.get_num_threads(),
                       "native_precisions": native_precisions("cpu"), "runs_lm": ranker.runs_lm,
                       "auto": "no LM" if ranker.reranker is None else auto_precision(fp32) if fp32 is not None else "not measured (add --precision fp32)",
                       "measured_ndcg10_shift": MEASURED_NDCG_SHIFT, "measured_on": MEASURED_ON}
    report.bars = bench.done_when(report)
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    latency_vs_k(ks, medians, output / "bench.png")
    console = Console(width=None if sys.stdout.isatty() else 160)  # logs get the full table
    for table in bench_tables(report):
        console.print(table)
    console.print(f"auto = {report.settings['auto']} here (native: {', '.join(report.settings['native_precisions']) or 'none'}; "
                  f"measured |nDCG@10 shift| {MEASURED_NDCG_SHIFT}, {MEASURED_ON}); torch threads: {report.settings['threads']}",
                  markup=False, highlight=False)
    console.print("[bold]Done-when bars (issues 15 and 25), this run:[/]")
    for line in done_when_lines(report):
        console.print(f"  {line}", markup=False, highlight=False)
    console.print(f"Wrote {output / 'bench.json'} and {output / 'bench.png'}")
