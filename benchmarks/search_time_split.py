"""Index a BEIR corpus into embedded Qdrant, run its queries through ResRankIndex.search, report quality and time.

Prints nDCG@10 without and with rerank, how many queries keep the dense top 10 after rerank, the mean
per-query time split (query encode / Qdrant / rerank), the median per-query time, and how many passages
were encoded at query time.

    python benchmarks/search_time_split.py                    # SciFact test, packaged model
    python benchmarks/search_time_split.py --max-queries 50 --model path/to/checkpoint
    python benchmarks/search_time_split.py --precision int8   # the reranker LM at int8 (docs/precision.md)
Corpus vectors come from the shared EmbeddingCache, so only the first run ever encodes the corpus.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from resrank_rag import ResRank
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.metrics import quality
from resrank_rag.index import Document, ResRankIndex

from instrument import PassageCounter, timed

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default="resrank-minilm-smollm2")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--first-stage", choices=("dense", "hybrid"), default="dense")
    parser.add_argument("--precision", default="auto", help="reranker LM precision: auto, fp32, bf16, int8")
    args = parser.parse_args()

    dataset = load_beir(args.data, args.split).limit_queries(args.max_queries)
    model = ResRank.from_pretrained(args.model, precision=args.precision)
    print(f"reranker precision: {model.precision}")
    cache = EmbeddingCache(model)
    with tempfile.TemporaryDirectory() as folder:
        index = ResRankIndex(model, dataset.name, path=folder, embedding_cache=cache)
        start = time.perf_counter()
        index.index([Document(doc_id, text) for doc_id, text in dataset.corpus.items()], show_progress_bar=True)
        print(f"indexed {index.count()} passages in {time.perf_counter() - start:.1f} s "
              f"({cache.encoded_count} encoded, the rest from the embedding cache)")

        totals: dict[str, float] = defaultdict(float)
        model.encode_query = timed(totals, "query encode", model.encode_query)
        index.client.query_points = timed(totals, "qdrant", index.client.query_points)
        model.rerank = timed(totals, "rerank", model.rerank)
        counter = PassageCounter(model)
        runs: dict[str, dict] = {"no rerank": {}, "rerank": {}}
        for rerank, name in ((False, "no rerank"), (True, "rerank")):
            totals.clear()
            start = time.perf_counter()
            walls = []
            for qid, text in dataset.queries.items():
                began = time.perf_counter()
                hits = index.search(text, k=args.k, top_n=args.k, rerank=rerank, first_stage=args.first_stage)
                walls.append((time.perf_counter() - began) * 1000)
                runs[name][qid] = [(h.id, h.rerank_score if rerank else h.retrieval_score) for h in hits]
            per_query = 1000 / len(dataset.queries)
            split = ", ".join(f"{part} {seconds * per_query:.1f} ms" for part, seconds in totals.items())
            print(f"[{name}] per query: total {(time.perf_counter() - start) * per_query:.1f} ms ({split}); "
                  f"median {statistics.median(walls):.1f} ms")
            metrics = ", ".join(f"{m} {v:.4f}" for m, v in quality(dataset.qrels, runs[name]).items())
            print(f"[{name}] {args.first_stage} first stage, {dataset.name} {args.split}: {metrics}")
        same = sum(
            [d for d, _ in runs["rerank"][q][:10]] == [d for d, _ in runs["no rerank"][q][:10]] for q in dataset.queries
        )
        print(f"queries whose top 10 is identical with and without rerank: {same} / {len(dataset.queries)}")
        print(f"passages encoded at query time: {counter.passages}")
        index.client.close()


if __name__ == "__main__":
    main()
