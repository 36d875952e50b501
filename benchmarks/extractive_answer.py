"""How soon the demo's extractive answer is there: ms per stage for ~20 questions on the shipped corpus.

Builds the demo as `make demo` does (the shipped documents, packaged model, the index in the user cache;
the first run encodes the corpus once), with no generator, asks each question after one warm-up question,
and prints the median and p95 of retrieve, rerank and extract, and of rerank + extract (the time after
retrieval until the extractive answer; the bar is 300 ms), with the CPU's model name. Pass "first" starts
with no sentence vector cached (an in-memory embedding cache); pass "again" asks the same questions, whose
sentences are then cached, as in a demo that has answered them before or has warmed its cache (the web
demo encodes every chunk's sentences in the background at start; --warm times that).

    python benchmarks/extractive_answer.py
    python benchmarks/extractive_answer.py --index-path :memory: --show --warm
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # demos/ lives beside resrank_rag/

from demos.docqa.app import DemoSettings, build  # noqa: E402
from resrank_rag.embedding_cache import EmbeddingCache  # noqa: E402

QUESTIONS = [
    "What does the with statement do?",
    "How are exceptions chained?",
    "What is the difference between is and ==?",
    "How do I rerank with vectors from Qdrant?",
    "What does the pass statement do?",
    "When is the else clause of a for loop executed?",
    "What does the global statement do?",
    "How does the try statement handle exceptions?",
    "What is a lambda expression?",
    "How are class definitions executed?",
    "What does the yield expression return?",
    "How do I install the demo?",
    "Which encoder does the packaged model use?",
    "How do I adapt the reranker to my own documents?",
    "What does the assert statement do?",
    "How does the del statement work?",
    "What is the nonlocal statement for?",
    "How are keyword arguments passed to a function?",
    "How do access lists restrict documents?",
    "What does int8 precision change?",
]
AFTER_RETRIEVAL = ("rerank", "extract")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resrank-minilm-smollm2")
    parser.add_argument("--index-path", default=None, help="default: the demo's index in the user cache")
    parser.add_argument("--show", action="store_true", help="print each question's extractive answer")
    parser.add_argument("--warm", action="store_true", help="time encoding every chunk's sentences before pass 'again'")
    args = parser.parse_args()

    settings = DemoSettings(model=args.model, index_path=args.index_path, generate=False)
    qa, info = build(settings)
    qa.index.embedding_cache = EmbeddingCache(qa.index.model, ":memory:")  # sentence vectors: none cached yet
    qa.ask("What does the for statement do?", generate=False)  # warm-up: first calls load lazily
    print(f"\n{len(QUESTIONS)} questions, {qa.view(None)['documents']} chunks ({info['corpus']}), model {info['model']} "
          f"({info['precision']}), first stage {qa.first_stage} top {qa.k}, {qa.context_passages} passages")
    print(f"CPU: {cpu_name()}")
    for run in ("first", "again"):
        if run == "again" and args.warm:
            start = time.perf_counter()
            new = qa.warm_extractive()
            print(f"\nwarming: {new} sentences encoded in {time.perf_counter() - start:.1f} s")
        rows = {stage: [] for stage in ("retrieve", *AFTER_RETRIEVAL)}
        after = []
        for question in QUESTIONS:
            answer = qa.ask(question, generate=False)
            for stage in rows:
                rows[stage].append(answer.timings_ms[stage])
            after.append(sum(answer.timings_ms[stage] for stage in AFTER_RETRIEVAL))
            if args.show and run == "first":
                best = answer.extractive[0] if answer.extractive else None
                print(f"{question}\n  -> {best.text[:120] if best else '(none)'}  [{best.label if best else ''}]")
        print(f"\npass {run!r}\n{'stage':<34}{'median ms':>10}{'p95 ms':>10}")
        for stage, values in (*rows.items(), ("after retrieval (rerank+extract)", after)):
            print(f"{stage:<34}{np.median(values):>10.1f}{np.percentile(values, 95):>10.1f}")
        print(f"bar: < 300 ms after retrieval; p95 {'meets' if np.percentile(after, 95) < 300 else 'misses'} it")

if __name__ == "__main__":
    main()
