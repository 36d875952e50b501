"""The feedback loop, simulated: a user rates what the demo shows, `resrank adapt --feedback` learns from it,
and held-back test queries say what it gained, beside the no-LM ways to use the same feedback.

For each of N training queries the demo's own pipeline runs (``DocQA.rank``: hybrid first stage top-20,
reranked by the shipped default). The simulated user 👍 the relevant passages among the 10 shown and 👎 up
to two non-relevant ones shown above the first relevant; the ratings go through a real ``FeedbackStore``.
Then, on the test queries (hybrid top-100 from the same collection), in one run:

- ``hybrid``: the first stage alone; ``base``: the shipped default (feature scorer, no LM);
- ``adapted``: what ``adapt --feedback`` publishes (the base when it did not win), and ``adapted LM off``;
- ``features``: the base's feature scorer refitted on the same feedback lists (warm start, no LM);
- ``memory``: the base plus ``FeedbackMemory`` over the same feedback (strength picked on adapt's held-out part);
- ``adapted+memory``.

Test queries are split by whether one of their relevant passages was ever 👍 (``seen``) or not (``unseen``).

    python benchmarks/feedback_loop.py --data ../shared/data/scifact --n 50 --n 100 --n 200 --n 400
    python benchmarks/feedback_loop.py --data ../shared/data/medquad --train-split train --test-split train \\
        --test-queries 300 --n 400 --out runs/feedback-loop/medquad

Each N's results are saved (``OUT/results-N.json``; ``results-N-seedS.json`` for another ``--seed``) and reused;
adapt resumes its own run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from resrank_rag import DEFAULT_MODEL, ResRank
from resrank_rag.adapt import EMA_DECAY, adapt
from resrank_rag.adapt.feedback import feedback_queries
from resrank_rag.adapt.lists import ADMIN, StoredVectors, first_stage_lists, split
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.metrics import paired_test, per_query
from resrank_rag.feedback import FeedbackStore, ShownItem, model_fingerprint, read_feedback, write_jsonl
from resrank_rag.feedback.memory import FeedbackMemory
from resrank_rag.index import Document, ResRankIndex
from resrank_rag.training.linear import feature_lists, fit_linear_scorer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the demo's pipeline (demos/)

SHOWN = 10
DEMO_K = 20
DEPTH = 100
STRENGTHS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def open_collection(model, data: Path, split: str, out: Path) -> ResRankIndex:
    """The collection of the whole corpus (one point per passage; vectors from the embedding cache). Its
    first stage is memoised per (query, k, first stage): embedded Qdrant searches in Python (about half a
    second a hybrid query here), and every N asks the same queries again."""
    corpus = load_beir(data, split).corpus
    index = ResRankIndex(model, data.name, path=str(out / "qdrant"), embedding_cache=EmbeddingCache(model))
    if index.count(principal=ADMIN) != len(corpus):
        index.index([Document(i, text) for i, text in corpus.items()], show_progress_bar=True)
    retrieve, memo = index.retrieve_with_vectors, {}

    def memoised(query, k=100, first_stage="dense", **options):
        key = (query, k, first_stage)
        if options.get("filter") is not None or key not in memo:
            memo[key] = retrieve(query, k, first_stage, **options)
        return memo[key]

    index.retrieve_with_vectors = memoised
    return index


def judged_queries(dataset) -> list[str]:
    """The query ids with at least one relevant passage, in file order."""
    return [q for q in dataset.queries if any(g > 0 for g in dataset.qrels.get(q, {}).values())]


def query_order(dataset, seed: int = 0) -> list[str]:
    usable = judged_queries(dataset)
    random.Random(seed).shuffle(usable)
    return usable


def simulate(index, model, dataset, qids: list[str], store_path: Path) -> list:
    """Ask every query through the demo pipeline and rate what is shown; returns the rated lists."""
    from demos.docqa.pipeline import DocQA, Stopwatch

    qa = DocQA(index, generator=None, k=DEMO_K, first_stage="hybrid", learn_from_feedback=False)  # the base's own lists
    store_path.unlink(missing_ok=True)
    fingerprint = model_fingerprint(model)
    with FeedbackStore(store_path) as store:
        for qid in qids:
            query, relevant = dataset.queries[qid], {d for d, g in dataset.qrels[qid].items() if g > 0}
            candidates, _ = qa.rank(query, Stopwatch())
            shown = candidates[:SHOWN]
            list_id = store.record_shown("simulated", query, index.collection,
                                         [ShownItem(c.id, c.resrank_rank, c.retrieval_rank) for c in shown],
                                         model=fingerprint, encoder=model.encoder_fingerprint)
            first = next((n for n, c in enumerate(shown) if c.id in relevant), None)
            for c in shown:
                if c.id in relevant:
                    store.rate(list_id, "simulated", c.id, 1)
            if first is not None:
                for c in [c for c in shown[:first] if c.id not in relevant][:2]:
                    store.rate(list_id, "simulated", c.id, -1)
        return store.lists(rated_only=False)


def test_candidates(index, model, dataset, qids):
    queries = [dataset.queries[q] for q in qids]
    query_vectors = model.encode_queries(queries)
    ids, texts, vectors = [], [], []
    for query, qv in zip(queries, query_vectors):
        hits, stored = index.retrieve_with_vectors(query, k=DEPTH, first_stage="hybrid", query_vector=qv, principal=ADMIN)
        ids.append([h.id for h in hits])
        texts.append([h.text for h in hits])
        vectors.append(np.asarray(stored, dtype=np.float32))
    return queries, query_vectors, ids, texts, vectors


def model_scores(model, queries, query_vectors, texts, vectors, lm: bool) -> list[np.ndarray]:
    if lm and model.runs_lm:
        out = []
        for start in range(0, len(queries), 16):
            chunk = slice(start, start + 16)
            for result in model.rerank_batch(queries[chunk], texts[chunk], vectors=vectors[chunk],
                                             query_vectors=query_vectors[chunk]):
                scores = np.zeros(len(result), np.float32)
                for r in result:
                    scores[r.index] = r.score
                out.append(scores)
        return out
    with torch.inference_mode():
        return [s.float().numpy() for s in model.scores_without_lm(
            torch.from_numpy(np.asarray(query_vectors)), [torch.from_numpy(v) for v in vectors], queries=queries, texts=texts)]


def run_of(qids, ids, scores) -> dict:
    return {q: list(zip(i, map(float, s))) for q, i, s in zip(qids, ids, scores)}


def pick_strength(model, index, feedback_file: Path, base_model) -> tuple[float, dict]:
    """The memory's strength with the best nDCG@10 on adapt's held-out part, remembering only the training part."""
    rated = feedback_queries(feedback_file, index)
    train, held = split(rated.queries, 0.2, 5)
    held_texts = {q.query.strip() for q in held}
    lists = [item for item in read_feedback(feedback_file) if item.query.strip() not in held_texts]
    vectors = StoredVectors()
    held_lists = first_stage_lists(index, base_model, held, DEPTH, "hybrid", vectors)
    qids = [item.query.key for item in held_lists]
    qrels = {item.query.key: item.qrels for item in held_lists}
    qv = np.stack([item.query_vector for item in held_lists])
    base = model_scores(base_model, [i.query.query for i in held_lists], qv, [i.texts for i in held_lists],
                        [i.vectors for i in held_lists], lm=False)
    curve = {}
    for strength in STRENGTHS:
        memory = FeedbackMemory.from_lists(model, lists, strength=strength)
        scores = [memory.rerank(v, item.ids, s) for v, item, s in zip(qv, held_lists, base)]
        curve[strength] = float(np.mean(list(per_query(qrels, run_of(qids, [i.ids for i in held_lists], scores)).values())))
    return max(curve, key=lambda s: (curve[s], -s)), curve


def refit_features(base_name: str, index, feedback_file: Path, precision: str):
    """The base's feature scorer refitted (warm start) on the feedback's training lists, as adapt builds them."""
    model = ResRank.from_pretrained(base_name, precision=precision)
    rated = feedback_queries(feedback_file, index)
    train, _ = split(rated.queries, 0.2, 5)
    vectors = StoredVectors()
    lists = [item.training_list(30) for item in first_stage_lists(index, model, train, 30, "hybrid", vectors) if any(item.labels)]
    fit_linear_scorer(model, feature_lists(model, lists, vectors.encode, progress=False), warm_start=True)
    return model


def compare(systems: dict, rated_lists, dataset_test, test_qids, ids, pairs) -> tuple[dict, dict, dict]:
    """(sizes, mean nDCG@10, paired tests of ``pairs``) over all test queries and split by whether one of a
    query's relevant passages was 👍 in ``rated_lists`` (seen) or not (unseen)."""
    values = {name: per_query(dataset_test.qrels, run_of(test_qids, ids, s)) for name, s in systems.items()}
    liked = {i for item in rated_lists for i, label in item.ratings.items() if label > 0}
    seen = {q for q in test_qids if any(d in liked for d, g in dataset_test.qrels[q].items() if g > 0)}
    parts = {"all": set(test_qids), "seen": seen, "unseen": set(test_qids) - seen}
    table = {part: {name: float(np.mean([v[q] for q in members])) if members else None for name, v in values.items()}
             for part, members in parts.items()}
    tests = {part: {f"{a} vs {b}": paired_test({q: values[a][q] for q in members}, {q: values[b][q] for q in members})
                    for a, b in pairs}
             for part, members in parts.items() if len(members) > 1}
    return {part: len(members) for part, members in parts.items()}, table, tests


def one_n(n: int, args, index, base, dataset_test, test_qids, candidates, all_lists, out: Path, seed: int = 0) -> dict:
    tag = f"{n}" if seed == 0 else f"{n}-seed{seed}"
    saved = out / f"results-{tag}.json"
    if saved.exists():
        return json.loads(saved.read_text())
    feedback_file = out / f"feedback-{n}.jsonl"
    write_jsonl(feedback_file, [item for item in all_lists[:n] if item.ratings])
    started = time.monotonic()
    result = adapt(index, feedback=feedback_file, out=out / f"adapt-{tag}", base=args.base, first_stage="hybrid",
                   steps=args.steps, prior_steps=args.prior_steps, eval_every=args.eval_every, patience=args.patience,
                   seed=seed, ema_decay=args.ema_decay or None, refit_features=args.refit_features)
    adapt_s = time.monotonic() - started
    adapted = ResRank.from_pretrained(result.model, precision=args.precision)
    features = refit_features(args.base, index, feedback_file, args.precision)
    strength, strength_curve = pick_strength(base, index, feedback_file, base)
    memory = FeedbackMemory.from_lists(base, read_feedback(feedback_file), strength=strength)

    queries, qv, ids, texts, vectors = candidates
    base_scores = model_scores(base, queries, qv, texts, vectors, lm=False)
    adapted_scores = model_scores(adapted, queries, qv, texts, vectors, lm=True)
    memory_adjust = [memory.adjust(v, i) for v, i in zip(qv, ids)]
    systems = {
        "hybrid": [-np.arange(len(i), dtype=np.float32) for i in ids],
        "base": base_scores,
        "adapted": adapted_scores,
        "adapted LM off": model_scores(adapted, queries, qv, texts, vectors, lm=False),
        "features": model_scores(features, queries, qv, texts, vectors, lm=False),
        "memory": [s + a for s, a in zip(base_scores, memory_adjust)],
        "adapted+memory": [s + a for s, a in zip(adapted_scores, memory_adjust)],
    }
    sizes, table, tests = compare(systems, read_feedback(feedback_file), dataset_test, test_qids, ids,
                                  [("adapted", "base"), ("adapted", "memory"), ("adapted", "features"),
                                   ("adapted", "adapted LM off"), ("memory", "base"), ("features", "base"),
                                   ("adapted+memory", "memory"), ("adapted+memory", "base")])
    record = {
        "n": n, "seed": seed, "ema_decay": result.data.get("ema_decay"),
        "refit_features": bool(result.data.get("refit_features")), "lists": sum(1 for item in all_lists[:n] if item.ratings),
        "events": sum(len(item.ratings) for item in all_lists[:n]), "adapted_published": result.adapted,
        "adapt_wall_s": round(adapt_s, 1), "adapt_steps": result.steps, "adapt_best_step": result.best_step,
        "adapt_heldout": result.rows, "adapt_heldout_curve": [(h["step"], h["ndcg@10"]) for h in result.history if "ndcg@10" in h],
        "memory_strength": strength, "memory_strength_curve": strength_curve,
        "sizes": sizes, "table": table, "tests": tests,
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
    }
    saved.write_text(json.dumps(record, indent=1))
    return record


def label_free_n(n: int, mode: str, args, index, base, dataset_test, test_qids, candidates, all_lists,
                 out: Path) -> dict:
    """``adapt --synthetic`` with no ratings at all: pseudo-queries from the chunks the first N logged questions
    showed in their top 3 (``mode="log"``, ``--synthetic-from``) or from chunks sampled uniformly (``"uniform"``)."""
    saved = out / f"results-label-free-{mode}-{n}.json"
    if saved.exists():
        return json.loads(saved.read_text())
    log_file = out / f"log-{n}.jsonl"  # every shown list, ratings stripped
    write_jsonl(log_file, [dataclasses.replace(item, ratings={}) for item in all_lists[:n]])
    started = time.monotonic()
    options = dict(synthetic_from=log_file) if mode == "log" else dict(synthetic=True)
    result = adapt(index, out=out / f"label-free-{mode}-{n}", base=args.base, first_stage="hybrid", steps=args.steps,
                   prior_steps=args.prior_steps, eval_every=args.eval_every, patience=args.patience, **options)
    adapt_s = time.monotonic() - started
    adapted = ResRank.from_pretrained(result.model, precision=args.precision)
    queries, qv, ids, texts, vectors = candidates
    systems = {
        "base": model_scores(base, queries, qv, texts, vectors, lm=False),
        "label-free": model_scores(adapted, queries, qv, texts, vectors, lm=True),
        "label-free LM off": model_scores(adapted, queries, qv, texts, vectors, lm=False),
    }
    sizes, table, tests = compare(systems, all_lists[:n], dataset_test, test_qids, ids,
                                  [("label-free", "base"), ("label-free", "label-free LM off")])
    record = {
        "n": n, "mode": mode, "synthetic_from": result.data.get("synthetic_from"),
        "train_queries": result.data.get("train_queries"), "adapted_published": result.adapted,
        "adapt_wall_s": round(adapt_s, 1), "adapt_steps": result.steps, "adapt_best_step": result.best_step,
        "adapt_heldout": result.rows, "sizes": sizes,
        "table": table, "tests": tests, "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
    }
    saved.write_text(json.dumps(record, indent=1))
    return record


def print_record(record: dict) -> None:
    if "mode" in record:
        print(f"\n## label-free ({record['mode']}), N = {record['n']} logged questions: {record['train_queries']} "
              f"pseudo-query lists; adapt {record['adapt_wall_s']:.0f} s, {record['adapt_steps']} steps "
              f"(best {record['adapt_best_step']}), {'published' if record['adapted_published'] else 'base kept'}")
    else:
        print(f"\n## N = {record['n']} queries asked (adapt seed {record.get('seed', 0)}): {record['lists']} rated lists, {record['events']} events; "
              f"adapt {record['adapt_wall_s']:.0f} s, {record['adapt_steps']} steps (best {record['adapt_best_step']}), "
              f"{'published' if record['adapted_published'] else 'base kept'}; memory strength {record['memory_strength']}")
    names = list(record["table"]["all"])
    print("| test queries | n | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for part, row in record["table"].items():
        cells = " | ".join("-" if row[name] is None else f"{row[name]:.4f}" for name in names)
        print(f"| {part} | {record['sizes'][part]} | {cells} |")
    for part, tests in record["tests"].items():
        for name, t in tests.items():
            print(f"  {part}: {name} {t['mean_difference']:+.4f} (p = {t['p_randomisation']:.4f})")


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("base", "adapted", "adapted LM off", "features", "memory", "adapted+memory"):
        ax.plot(ns, [r["table"]["all"][name] for r in records], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("simulated user queries with feedback")
    ax.set_ylabel("nDCG@10 (test, hybrid top-100)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--test-queries", type=int, default=None,
                        help="Test on this many queries (from the end of the shuffled order when train and test splits are one).")
    parser.add_argument("--n", type=int, action="append", help="Feedback queries (repeat); default 50 100 200 400.")
    parser.add_argument("--base", default=DEFAULT_MODEL)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--prior-steps", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, action="append",
                        help="adapt's seed (repeat to adapt once per seed: how much the LM's result varies); default 0.")
    parser.add_argument("--ema-decay", type=float, default=EMA_DECAY,
                        help="adapt's ema_decay: publish the moving average of the trained weights; 0: off (use another --out).")
    parser.add_argument("--refit-features", action=argparse.BooleanOptionalAction, default=None,
                        help="adapt's refit_features: refit the feature scorer on the feedback before the LM trains "
                             "(default: when the base has one; use another --out).")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--label-free", action="append", choices=("log", "uniform"), default=[],
                        help="Also adapt with no ratings (repeat): pseudo-queries from the chunks the logged questions "
                             "showed first (log) or sampled uniformly (uniform); a table per N.")
    args = parser.parse_args()
    ns = args.n or [400, 200, 100, 50]  # run in this order (the largest first); tables and plot sorted by N
    out = args.out or Path("runs/feedback-loop") / args.data.name
    out.mkdir(parents=True, exist_ok=True)

    base = ResRank.from_pretrained(args.base, precision=args.precision)
    index = open_collection(base, args.data, args.train_split, out)
    train = load_beir(args.data, args.train_split)
    order = query_order(train)
    if args.test_split == args.train_split:  # one split: the last queries of the order are the test queries
        test_n = args.test_queries or 300
        if len(order) < max(ns) + test_n:
            raise SystemExit(f"{args.data} has {len(order)} usable queries, fewer than {max(ns)} + {test_n}")
        test_qids, order = order[-test_n:], order[: -test_n]
        test = train
    else:
        test = load_beir(args.data, args.test_split)
        test_qids = judged_queries(test)[: args.test_queries]
    lists_file = out / f"simulated-{max(ns)}.jsonl"
    if lists_file.exists():
        all_lists = read_feedback(lists_file, rated_only=False)
    else:
        all_lists = simulate(index, base, train, order[: max(ns)], out / "feedback.sqlite")
        write_jsonl(lists_file, all_lists)
    candidates = test_candidates(index, base, test, test_qids)
    print(f"{args.data.name}: {len(test_qids)} test queries; CPU {cpu_name()}, {torch.get_num_threads()} threads")
    seeds = args.seed or [0]
    records = []
    for n in ns:
        for seed in seeds:
            record = one_n(n, args, index, base, test, test_qids, candidates, all_lists, out, seed)
            print_record(record)
            if seed == seeds[0]:
                records.append(record)  # the plot and results.json follow the first seed
        for mode in args.label_free:
            print_record(label_free_n(n, mode, args, index, base, test, test_qids, candidates, all_lists, out))
    records.sort(key=lambda r: r["n"])
    (out / "results.json").write_text(json.dumps(records, indent=1))
    plot(records, out / "feedback_loop.png", f"{args.data.name}: learning from simulated feedback")
    print(f"\nwrote {out / 'results.json'} and {out / 'feedback_loop.png'}")


if __name__ == "__main__":
    main()
