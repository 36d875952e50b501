"""The lever table: each model against its LM-off self and the no-LM paths, same candidates, same run.

For every set (the recipe's dev sets, TREC DL 2020 shipped BM25 top-100, SciFact test hybrid top-100) it
reports nDCG@10 of dense cosine, the prior (cosine + the feature checkpoint's rank prior), the no-LM
feature scorer (``--features``, a ``resrank fit-features`` checkpoint), and for each ``--model`` its
default path and its LM-off self (``resrank-nolm``). Paired tests over queries: each model vs its LM-off
self, vs the feature scorer and vs the prior, features vs prior; the dev mean is the mean of the dev
sets' nDCG@10, tested with a sign-flip randomisation test whose statistic is that mean's difference. Prints a markdown table, writes JSON and a PNG.

    python benchmarks/feature_baselines.py --features resrank-minilm-smollm2 \
        --model experiments/issue14-round2-control-step600 --model runs/lm-r3-web/best
Vectors come from the shared EmbeddingCache (copy ../shared/cache first).
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
from resrank_rag.evaluation.metrics import paired_test, per_query, set_mean_test
from resrank_rag.training.dev import DevSet

DEV_RECIPE = "configs/cpu-lm-r3-web.yaml"
TESTS = (("trec-dl-2020", "test", "shipped"), ("scifact", "test", "hybrid"))


def candidate_sets(dev_recipe: str, data: str, model, cache, dev_max_queries: int) -> list[tuple[str, str, object, dict]]:
    """(kind, name, dataset, {query id: candidate doc ids}) for the dev sets, then the test sets."""
    import yaml

    from resrank_rag.training.config import DatasetSpec, _build

    specs = [_build(DatasetSpec, d) for d in yaml.safe_load(Path(dev_recipe).read_text())["dev"]]
    sets = [("dev", dev.name, dev.dataset, dev.candidates) for dev in (DevSet(s, 100, dev_max_queries) for s in specs)]
    for folder, split, stage in TESTS:
        dataset = load_beir(Path(data) / folder, split)
        run = run_first_stage(stage, model, dataset, cache, 100)
        sets.append(("test", f"{folder}-{split} ({stage} top-100)", dataset, {q: [d for d, _ in hits] for q, hits in run.items() if hits}))
    return sets


def scores_of(model, queries, texts, vectors, query_vectors, lm: bool, linear: bool = True) -> list[np.ndarray]:
    """One score array per list: the model's default path (``lm``) or its no-LM path."""
    if lm:
        results = model.rerank_batch(queries, texts, vectors=vectors, query_vectors=query_vectors)
        out = []
        for result in results:
            scores = np.zeros(len(result), np.float32)
            for r in result:
                scores[r.index] = r.score
            out.append(scores)
        return out
    with torch.inference_mode():
        return [s.numpy() for s in model.scores_without_lm(torch.from_numpy(query_vectors), [torch.from_numpy(v) for v in vectors],
                                                            queries=queries, texts=texts, linear=linear)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="resrank-minilm-smollm2", help="checkpoint with the no-LM feature scorer")
    parser.add_argument("--model", action="append", default=[], help="LM checkpoint(s) to compare (repeatable)")
    parser.add_argument("--dev", default=DEV_RECIPE, help="training recipe whose dev: list gives the dev sets")
    parser.add_argument("--dev-max-queries", type=int, default=100)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--output", default="runs/lever-table")
    args = parser.parse_args()
    features = ResRank.from_pretrained(args.features, lm=False)
    if features.linear_scorer is None:
        raise SystemExit(f"{args.features} has no linear feature scorer; fit one with resrank fit-features")
    cache = EmbeddingCache(features)
    sets = candidate_sets(args.dev, args.data, features, cache, args.dev_max_queries)
    models = {}
    for name in args.model:
        model = ResRank.from_pretrained(name, precision=args.precision, lm=True)
        if model.encoder_fingerprint != features.encoder_fingerprint:
            raise SystemExit(f"{name} has another encoder than {args.features}: the stored vectors would not match")
        models[name] = model

    table: dict[str, dict] = {}
    per: dict[str, dict[str, dict[str, float]]] = {}
    for kind, name, dataset, candidates in sets:
        qids = list(candidates)
        queries = [dataset.queries[q] for q in qids]
        texts = [[dataset.corpus[d] for d in candidates[q]] for q in qids]
        vectors = [cache.encode(t) for t in texts]
        query_vectors = features.encode_queries(queries)
        systems = {
            "dense": [v @ q for v, q in zip(vectors, query_vectors)],
            "prior": scores_of(features, queries, texts, vectors, query_vectors, lm=False, linear=False),
            "features": scores_of(features, queries, texts, vectors, query_vectors, lm=False),
            "features (vectors only)": scores_of(features, queries, [None] * len(qids), vectors, query_vectors, lm=False),
        }
        for label, model in models.items():
            systems[f"{label}"] = scores_of(model, queries, texts, vectors, query_vectors, lm=True)
            systems[f"{label} LM off"] = scores_of(model, queries, texts, vectors, query_vectors, lm=False)
        qrels = {q: dataset.qrels[q] for q in qids}
        per[name] = {system: per_query(qrels, {q: list(zip(candidates[q], map(float, s))) for q, s in zip(qids, scores)})
                     for system, scores in systems.items()}
        table[name] = {"kind": kind, "queries": len(qids), **{s: float(np.mean(list(v.values()))) for s, v in per[name].items()}}
        print(f"{name:40s} " + "  ".join(f"{s} {table[name][s]:.4f}" for s in systems) + f"  ({len(qids)} q)", flush=True)

    dev_names = [n for n, row in table.items() if row["kind"] == "dev"]
    systems = [s for s in table[dev_names[0]] if s not in ("kind", "queries")]
    table["dev mean"] = {"kind": "dev mean", "queries": sum(table[n]["queries"] for n in dev_names),
                         **{s: float(np.mean([table[n][s] for n in dev_names])) for s in systems}}
    pairs = [("features", "prior")] + [(m, other) for m in models for other in (f"{m} LM off", "features", "prior")]
    tests = []
    for where in [*[n for n, row in table.items() if row["kind"] == "test"], "dev mean"]:
        for a, b in pairs:
            if where == "dev mean":
                result = set_mean_test({n: per[n][a] for n in dev_names}, {n: per[n][b] for n in dev_names})
            else:
                result = paired_test(per[where][a], per[where][b])
            tests.append({"set": where, "a": a, "b": b, **result})

    print("\n| set | q | " + " | ".join(systems) + " |")
    print("|---|---|" + "---|" * len(systems))
    for name, row in table.items():
        print(f"| {name} | {row['queries']} | " + " | ".join(f"{row[s]:.4f}" for s in systems) + " |")
    print("\n| set | a | b | a - b | p (t-test) | p (randomisation) |\n|---|---|---|---|---|---|")
    for t in tests:
        t_test = f"{t['p_ttest']:.4f}" if "p_ttest" in t else "-"
        print(f"| {t['set']} | {t['a']} | {t['b']} | {t['mean_difference']:+.4f} | {t_test} | {t['p_randomisation']:.4f} |")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lever-table.json").write_text(json.dumps({"models": args.model, "features": args.features, "precision": args.precision,
                                                       "table": table, "tests": tests}, indent=2) + "\n")
    plot(table, systems, out / "lever-table.png")
    print(f"wrote {out / 'lever-table.json'} and {out / 'lever-table.png'}")


def plot(table: dict, systems: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(names)), 4.5))
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        ax.bar(np.arange(len(names)) + i * width, [table[n][system] for n in names], width, label=system)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(bottom=min(table[n][s] for n in names for s in systems) - 0.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Each model, its LM-off self and the no-LM paths, same candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
