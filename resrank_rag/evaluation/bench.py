"""Speed and memory benchmark: rerank latency vs K, peak memory per method, indexing throughput."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

STORED, TEXTS, FULLTEXT = "resrank (stored vectors)", "resrank (texts, encoder included)", "fulltext-listwise"
METHODS = (STORED, TEXTS, FULLTEXT)


@dataclass
class BenchReport:
    ks: list[int]
    median_ms: dict[str, list[float | None]]
    runs: dict[str, list[int]]
    ratios: dict[str, list[float | None]] = field(default_factory=dict)
    memory_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def _call(method: str, model, listwise, query: str, texts: list[str], vectors: np.ndarray) -> None:
    if method == STORED:
        model.rerank(query, vectors=vectors, query_vector=model.encode_query(query))
    elif method == TEXTS:
        model.rerank(query, texts)
    else:
        listwise.rerank(query, texts)


def latency_vs_k(
    model, listwise, query: str, texts: list[str], vectors: np.ndarray, ks: list[int], repeats: int = 3,
    fulltext_repeats: int = 1, fulltext_max_k: int | None = None,
) -> tuple[dict, dict]:
    """Median wall time per (method, K). Methods and K are interleaved inside each repeat, so load
    changes on the machine hit every method alike; fulltext-listwise runs only ``fulltext_repeats`` times
    and only up to ``fulltext_max_k`` candidates."""
    if max(ks) > len(texts):
        raise ValueError(f"K up to {max(ks)} needs at least that many passages, got {len(texts)}")
    for method in METHODS:  # warm-up: first calls pay one-off allocation costs
        _call(method, model, listwise, query, texts[:2], vectors[:2])
    times: dict[str, dict[int, list[float]]] = {m: {k: [] for k in ks} for m in METHODS}
    def wanted(r: int, k: int, m: str) -> bool:
        return m != FULLTEXT or (r < fulltext_repeats and (fulltext_max_k is None or k <= fulltext_max_k))

    plan = [(r, k, m) for r in range(repeats) for k in ks for m in METHODS if wanted(r, k, m)]
    for _, k, method in tqdm(plan, desc="Benchmarking", unit="call"):
        start = time.perf_counter()
        _call(method, model, listwise, query, texts[:k], vectors[:k])
        times[method][k].append((time.perf_counter() - start) * 1000)
    medians = {m: [statistics.median(times[m][k]) if times[m][k] else None for k in ks] for m in METHODS}
    counts = {m: [len(times[m][k]) for k in ks] for m in METHODS}
    return medians, counts


def ratios(medians: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
    """How many times slower than ResRank over stored vectors, per K."""
    base = medians[STORED]
    return {
        f"{m} / {STORED}": [None if v is None or b is None else v / b for v, b in zip(medians[m], base)]
        for m in (TEXTS, FULLTEXT)
    }


def _memory_probe(method: str, model_name: str, query: str, texts: list[str], vectors: np.ndarray, passage_tokens: int, queue) -> None:
    """Child process: load only what ``method`` needs, rerank once, report peak RSS (MB) after each step."""
    from resrank_rag import ResRank
    from resrank_rag.backbones import load_reranker
    from resrank_rag.evaluation.rerankers import FulltextListwiseReranker

    model = listwise = None
    if method == FULLTEXT:
        listwise = FulltextListwiseReranker(*load_reranker(ResRank.from_pretrained(model_name).config.reranker, causal_lm=True), passage_tokens)
    else:
        model = ResRank.from_pretrained(model_name)
    loaded = peak_rss_mb()
    _call(method, model, listwise, query, texts, vectors)
    queue.put({"after load": loaded, "after rerank": peak_rss_mb()})


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


def peak_memory(model_name: str, query: str, texts: list[str], vectors: np.ndarray, passage_tokens: int = 100) -> dict[str, dict[str, float]]:
    """Peak resident memory (VmHWM, MB) of a fresh process per method: after loading, after one rerank
    of all ``texts``."""
    context = multiprocessing.get_context("spawn")
    out = {}
    for method in tqdm(METHODS, desc="Peak memory", unit="process"):
        queue = context.Queue()
        child = context.Process(target=_memory_probe, args=(method, model_name, query, texts, vectors, passage_tokens, queue))
        child.start()
        out[method] = queue.get()
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
