"""What the LM branch must beat, without any LM forward: on a recipe's dev sets and the two test sets,
nDCG@10 of dense cosine, of a checkpoint's LM-off scores (cosine plus its rank prior), and of a linear
scorer over the same per-candidate features the LM reads (cosine, rank, lexical), trained with RankNet
on the recipe's own training lists. If the linear row matches the LM, the features earn the gain, not the LM.

    python benchmarks/feature_baselines.py --config configs/cpu-lm-features.yaml --lists 3000
Candidates: dev sets as the trainer builds them; TREC DL 2020 shipped BM25 top-100; SciFact test hybrid
top-100 (the `resrank eval` first stages). Vectors come from the shared EmbeddingCache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from resrank_rag import ResRank
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.harness import run_first_stage
from resrank_rag.evaluation.metrics import quality
from resrank_rag.features import candidate_features
from resrank_rag.training import TrainConfig
from resrank_rag.training.data import load_mix
from resrank_rag.training.dev import DevSet

KINDS = ("rank", "cosine", "lexical")


def design(model, query: str, texts: list[str], vectors: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
    """(K, 1 + F): the cosine, then the candidate features in the caller's order."""
    cosine = vectors @ query_vector
    return np.concatenate([cosine[:, None], candidate_features(KINDS, cosine, query, texts)], axis=1)


def fit_linear(rows: list[tuple[np.ndarray, np.ndarray]], steps: int = 400) -> torch.Tensor:
    """RankNet on x @ w over every list; w starts as cosine / 0.05 (dense ranking)."""
    width = rows[0][0].shape[1]
    weight = torch.zeros(width)
    weight[0] = 20.0
    weight.requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=0.05)
    data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in rows if (y > 0).any() and (y == 0).any()]
    for _ in range(steps):
        optimizer.zero_grad()
        losses = []
        for x, y in data:
            s = x @ weight
            pairs = y[:, None] > y[None, :]
            losses.append(torch.nn.functional.softplus(-(s[:, None] - s[None, :])[pairs]).mean())
        torch.stack(losses).mean().backward()
        optimizer.step()
    return weight.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cpu-lm-features.yaml")
    parser.add_argument("--model", default="resrank-minilm-smollm2", help="checkpoint whose LM-off scores form the prior row")
    parser.add_argument("--lists", type=int, default=3000, help="training lists sampled from the recipe's mix")
    parser.add_argument("--max-queries", type=int, default=2000, help="cap on queries per training set (list building is BM25 per query)")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--output", default="runs/feature-baselines.json")
    args = parser.parse_args()
    recipe = TrainConfig.from_yaml(args.config)
    model = ResRank.from_pretrained(args.model)
    cache = EmbeddingCache(model)

    for spec in recipe.datasets:
        spec.max_queries = min(spec.max_queries or args.max_queries, args.max_queries)
    mix = load_mix(recipe.datasets, recipe.list_size, recipe.max_positives, recipe.seed)
    lists = [mix.sample(step, 1)[0] for step in range(args.lists)]
    query_vectors = model.encode_queries([item.query for item in lists], show_progress_bar=True)
    rows = [(design(model, item.query, item.texts, cache.encode(item.texts), q).astype(np.float32), np.array(item.labels))
            for item, q in zip(lists, query_vectors)]
    weight = fit_linear(rows)
    print("linear weights [cosine, ln rank, cos, cos z/3, cos - max, bm25, coverage, idf coverage, text]:",
          np.round(weight.numpy(), 3).tolist())

    sets = [(dev.name, dev.dataset, dev.candidates) for dev in (DevSet(s, recipe.list_size, recipe.dev_max_queries) for s in recipe.dev)]
    for folder, split, stage in (("trec-dl-2020", "test", "shipped"), ("scifact", "test", "hybrid")):
        dataset = load_beir(Path(args.data) / folder, split)
        run = run_first_stage(stage, model, dataset, cache, 100)
        sets.append((f"{folder}-{split} ({stage} top-100)", dataset, {q: [d for d, _ in hits] for q, hits in run.items() if hits}))

    table = {}
    for name, dataset, candidates in sets:
        runs = {"dense": {}, "LM off (prior)": {}, "linear features": {}}
        qids = list(candidates)
        qv = model.encode_queries([dataset.queries[q] for q in qids])
        for qid, q_vec in zip(qids, qv):
            docs = candidates[qid]
            texts = [dataset.corpus[d] for d in docs]
            vectors = cache.encode(texts)
            x = design(model, dataset.queries[qid], texts, vectors, q_vec)
            with torch.no_grad():
                prior = model.scores_without_lm(torch.from_numpy(q_vec)[None], [torch.from_numpy(vectors)])[0].numpy()
            for method, scores in (("dense", x[:, 0]), ("LM off (prior)", prior), ("linear features", x @ weight.numpy())):
                runs[method][qid] = list(zip(docs, map(float, scores)))
        qrels = {q: dataset.qrels[q] for q in qids}
        table[name] = {method: quality(qrels, run)["nDCG@10"] for method, run in runs.items()} | {"queries": len(qids)}
        print(f"{name:45s} " + "  ".join(f"{m} {v:.4f}" for m, v in table[name].items() if m != "queries") + f"  ({len(qids)} q)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"weights": weight.tolist(), "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
