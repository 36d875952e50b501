"""Speed and memory benchmark: rerank latency vs K per precision, peak memory and first call, indexing throughput."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

STORED, STORED_TEXTS = "resrank (stored vectors)", "resrank (stored vectors + texts)"
TEXTS, FULLTEXT = "resrank (texts, encoder included)", "fulltext-listwise"
METHODS = (STORED, STORED_TEXTS, TEXTS, FULLTEXT)
"""Stored vectors alone (as a vector store returns them, no lexical features), with the candidates' texts
too (the lexical features: what ``ResRankIndex.search`` passes), texts alone (every passage encoded now),
and the full-text listwise baseline. Every ResRank method includes the query encoding."""


@dataclass
class BenchReport:
    ks: list[int]
    median_ms: dict[str, list[float | None]]
    runs: dict[str, list[int]]
    ratios: dict[str, list[float | None]] = field(default_factory=dict)
    memory_mb: dict[str, dict[str, float | None]] = field(default_factory=dict)
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    throughput: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    bars: list[dict] = field(default_factory=list)
    """Issue 15's done-when figures from this run (``done_when``): name, value, bar, met."""


def label(method: str, precision: str) -> str:
    """The row name of ``method`` run at ``precision``, e.g. ``resrank (stored vectors) [int8]``."""
    return f"{method} [{precision}]"


@dataclass
class Setup:
    """One precision under test: the ResRank model and the fulltext-listwise baseline, both at that precision."""

    precision: str
    model: Any
    listwise: Any


def load_setup(model_name: str, precision: str, passage_tokens: int = 100, methods=METHODS) -> Setup:
    """Load what ``methods`` need at ``precision``: ResRank via ``from_pretrained`` (warm start included),
    the fulltext-listwise LM (the checkpoint's reranker backbone with its LM head) via ``convert_module``."""
    from resrank_rag import ResRank
    from resrank_rag.backbones import load_reranker
    from resrank_rag.evaluation.rerankers import FulltextListwiseReranker
    from resrank_rag.precision import convert_module

    model = listwise = None
    if {STORED, STORED_TEXTS, TEXTS} & set(methods):
        model = ResRank.from_pretrained(model_name, precision=precision)
    if FULLTEXT in methods:
        lm, tokenizer = load_reranker(ResRank.untrained_config(model_name).reranker, causal_lm=True)
        listwise = FulltextListwiseReranker(convert_module(lm, precision if model is None else model.precision), tokenizer, passage_tokens)
    return Setup(precision if model is None else model.precision, model, listwise)


def _call(method: str, setup: Setup, query: str, texts: list[str], vectors: np.ndarray) -> None:
    model = setup.model
    if method == STORED:
        model.rerank(query, vectors=vectors, query_vector=model.encode_query(query))
    elif method == STORED_TEXTS:
        model.rerank(query, texts, vectors=vectors, query_vector=model.encode_query(query))
    elif method == TEXTS:
        model.rerank(query, texts)
    else:
        setup.listwise.rerank(query, texts)


def latency_vs_k(
    setups: list[Setup], query: str, texts: list[str], vectors: np.ndarray, ks: list[int], repeats: int = 3,
    fulltext_repeats: int = 1, fulltext_max_k: int | None = None,
) -> tuple[dict, dict]:
    """Median wall time per (method, precision, K), keyed by ``label``. Precisions, methods and K are
    interleaved inside each repeat, so load changes on the machine hit all of them alike;
    fulltext-listwise runs only ``fulltext_repeats`` times and only up to ``fulltext_max_k`` candidates."""
    if max(ks) > len(texts):
        raise ValueError(f"K up to {max(ks)} needs at least that many passages, got {len(texts)}")
    for setup in setups:  # warm-up: first calls pay one-off allocation costs
        for method in METHODS:
            _call(method, setup, query, texts[:2], vectors[:2])
    names = [label(m, s.precision) for s in setups for m in METHODS]
    times: dict[str, dict[int, list[float]]] = {name: {k: [] for k in ks} for name in names}

    def wanted(r: int, k: int, m: str) -> bool:
        return m != FULLTEXT or (r < fulltext_repeats and (fulltext_max_k is None or k <= fulltext_max_k))

    plan = [(k, s, m) for r in range(repeats) for k in ks for s in setups for m in METHODS if wanted(r, k, m)]
    for k, setup, method in tqdm(plan, desc="Benchmarking", unit="call"):
        start = time.perf_counter()
        _call(method, setup, query, texts[:k], vectors[:k])
        times[label(method, setup.precision)][k].append((time.perf_counter() - start) * 1000)
    medians = {n: [statistics.median(times[n][k]) if times[n][k] else None for k in ks] for n in names}
    counts = {n: [len(times[n][k]) for k in ks] for n in names}
    return medians, counts


def ratios(medians: dict[str, list[float | None]], precisions: list[str]) -> dict[str, list[float | None]]:
    """Per K: how many times slower than ResRank over stored vectors at the same precision, and how many
    times faster than fp32 each precision's ResRank over stored vectors is."""
    def divide(top, bottom):
        return [None if a is None or b is None else a / b for a, b in zip(top, bottom)]

    out = {}
    for p in precisions:
        for m in (TEXTS, FULLTEXT):
            out[f"{label(m, p)} / {label(STORED, p)}"] = divide(medians[label(m, p)], medians[label(STORED, p)])
    if "fp32" in precisions:
        for p in precisions:
            if p != "fp32":
                out[f"speed-up of {label(STORED, p)} over fp32"] = divide(medians[label(STORED, "fp32")], medians[label(STORED, p)])
    return out


SPEEDUP_BAR, FULLTEXT_RATIO_BAR, FIRST_CALL_BAR, NO_LM_MS_BAR = 2.5, 100.0, 2.0, 15.0
"""Issue 15's bars: ResRank over stored vectors (query encoding included) >= 2.5x faster than fp32; the
fulltext-listwise / ResRank ratio at the same precision >= 100x; the first call <= 2x a steady call.
Issue 25's: a checkpoint that runs no LM reranks K=100 stored vectors with their texts in <= 15 ms."""


def done_when(report: BenchReport, k: int = 100) -> list[dict]:
    """Issue 15's done-when figures from one bench run, at ``k`` candidates (or the largest K timed):
    per reduced precision, its speed-up over fp32 of ResRank over stored vectors with the query encoding
    included (``STORED`` times ``encode_query`` plus the rerank); per precision, fulltext-listwise / ResRank
    at the same precision; per memory probe with warm start, first call / steady state."""
    k = k if k in report.ks else max(report.ks)
    at = report.ks.index(k)
    bars = []

    def add(name, value, bar, higher_is_better, detail=""):
        met = None if value is None else (value >= bar if higher_is_better else value <= bar)
        bars.append({"name": name, "value": value, "bar": bar, "higher_is_better": higher_is_better, "met": met, "detail": detail})

    if report.settings.get("runs_lm") is False:
        for p in report.precisions:
            ms = report.median_ms[label(STORED_TEXTS, p)][at]
            add(f"no-LM rerank of {k} stored vectors + texts, query encoding included [{p}] (ms)", ms, NO_LM_MS_BAR, False,
                "-" if ms is None else f"{ms:,.1f} ms")
    fp32 = report.median_ms.get(label(STORED, "fp32"), [None] * len(report.ks))[at]
    for p in report.precisions:
        if p == "fp32":
            continue
        ms = report.median_ms[label(STORED, p)][at]
        value = None if fp32 is None or ms is None else fp32 / ms
        detail = "-" if value is None else f"{fp32:,.1f} ms fp32 / {ms:,.1f} ms {p}"
        add(f"speed-up vs fp32 with query encoding included, ResRank over {k} stored vectors [{p}]", value, SPEEDUP_BAR, True, detail)
    for p in report.precisions:
        full, ours = report.median_ms[label(FULLTEXT, p)][at], report.median_ms[label(STORED, p)][at]
        value = None if full is None or ours is None else full / ours
        detail = "fulltext-listwise not timed at this K" if full is None else f"{full:,.1f} ms / {ours:,.1f} ms"
        add(f"fulltext-listwise / ResRank over stored vectors at K={k}, both [{p}]", value, FULLTEXT_RATIO_BAR, True, detail)
    for name, values in report.memory_mb.items():
        if name.startswith(STORED) and NO_WARM_START not in name and values.get("steady ms"):
            first, steady = values["first call ms"], values["steady ms"]
            add(f"first call / steady call after loading, {name}, K={report.settings.get('memory_k')}",
                first / steady, FIRST_CALL_BAR, False, f"{first:,.1f} ms / {steady:,.1f} ms")
    return bars


def _memory_probe(method: str, precision: str, warm_start: bool, model_name: str, query: str, texts: list[str],
                  vectors: np.ndarray, passage_tokens: int, queue) -> None:
    """Child process: load only what ``method`` needs, rerank, report peak RSS (MB) and call times (ms)."""
    if method == FULLTEXT:
        setup = load_setup(model_name, precision, passage_tokens, (FULLTEXT,))
    else:
        from resrank_rag import ResRank

        setup = Setup(precision, ResRank.from_pretrained(model_name, precision=precision, warm_start=warm_start), None)
    loaded = peak_rss_mb()
    timings = []
    for _ in range(1 if method == FULLTEXT else 4):  # the first call after loading, then steady state
        start = time.perf_counter()
        _call(method, setup, query, texts, vectors)
        timings.append((time.perf_counter() - start) * 1000)
    queue.put({"after load": loaded, "after rerank": peak_rss_mb(), "first call ms": timings[0],
               "steady ms": statistics.median(timings[1:]) if len(timings) > 1 else None})


def peak_rss_mb() -> float:
    """This process's peak resident set (MB): VmHWM, which starts afresh at exec. ru_maxrss does not (a
    spawned child would report its parent's peak), so it is only the fallback where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


NO_WARM_START = "no warm start"


def peak_memory(model_name: str, query: str, texts: list[str], vectors: np.ndarray, passage_tokens: int = 100,
                precisions: list[str] = ("fp32",)) -> dict[str, dict[str, float | None]]:
    """One fresh process per (method, precision), plus ResRank over stored vectors loaded without warm
    start: peak resident memory (VmHWM, MB) after loading and after reranking all ``texts``, and the
    first call's time against the steady state."""
    context = multiprocessing.get_context("spawn")
    probes = [(m, p, True) for p in precisions for m in METHODS] + [(STORED, p, False) for p in precisions]
    out = {}
    for method, precision, warm in tqdm(probes, desc="Peak memory and first call", unit="process"):
        queue = context.Queue()
        args = (method, precision, warm, model_name, query, texts, vectors, passage_tokens, queue)
        child = context.Process(target=_memory_probe, args=args)
        child.start()
        out[label(method, precision) + ("" if warm else f", {NO_WARM_START}")] = queue.get()
        child.join()
    return out


def indexing_throughput(model, texts: list[str], batch_size: int = 32) -> dict[str, float]:
    """Passages per second: ResRank's encoder (the vectors stored at indexing) vs plain sentence-transformers
    encoding of the same texts with the same MiniLM weights, alternated twice each."""
    from sentence_transformers import SentenceTransformer

    from resrank_rag.backbones import resolve

    plain = SentenceTransformer(resolve(model.config.encoder), device="cpu")
    plain.max_seq_length = model.config.max_passage_tokens
    best = {"resrank encode": 0.0, "sentence-transformers encode": 0.0}
    for _ in range(2):
        for label, encode in (("resrank encode", model.encode), ("sentence-transformers encode", plain.encode)):
            start = time.perf_counter()
            encode(texts, batch_size=batch_size, show_progress_bar=False)
            best[label] = max(best[label], len(texts) / (time.perf_counter() - start))
    return best
