"""Does adapt's pick of the best held-out step help? SciFact test nDCG@10 of each feedback adaptation's published
model (``OUT/model``: the best held-out evaluation) against its final step (``OUT/run/model``), in one process.

    python experiments/issue28-selection/best_vs_final.py runs/feedback-loop/scifact/adapt-400-seed2 ...
    # run from the repository root, after benchmarks/feedback_loop.py made those folders
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
import feedback_loop as fl  # noqa: E402

from resrank_rag import DEFAULT_MODEL, ResRank  # noqa: E402
from resrank_rag.evaluation.beir import load_beir  # noqa: E402

out, data = Path("runs/feedback-loop/scifact"), Path("../shared/data/scifact")
base = ResRank.from_pretrained(DEFAULT_MODEL, precision="auto")
index = fl.open_collection(base, data, "train", out)
test = load_beir(data, "test")
test_qids = fl.judged_queries(test)
queries, qv, ids, texts, vectors = fl.test_candidates(index, base, test, test_qids)
rated = fl.read_feedback(out / "feedback-400.jsonl")
systems, pairs = {"base": fl.model_scores(base, queries, qv, texts, vectors, lm=False)}, []
for folder in map(Path, sys.argv[1:]):
    step = json.loads((folder / "report.json").read_text()).get("best_step")
    for kind, path in (("best", folder / "model"), ("final", folder / "run" / "model")):
        systems[f"{folder.name} {kind}"] = fl.model_scores(ResRank.from_pretrained(str(path), precision="auto"),
                                                           queries, qv, texts, vectors, lm=True)
    pairs += [(f"{folder.name} best", "base"), (f"{folder.name} final", "base"),
              (f"{folder.name} final", f"{folder.name} best")]
    print(folder.name, "best step", step, flush=True)
sizes, table, tests = fl.compare(systems, rated, test, test_qids, ids, pairs)
print(f"CPU {fl.cpu_name()}; {sizes}")
for name, value in table["all"].items():
    print(f"{name:40s} {value:.4f}")
for pair, result in tests["all"].items():
    print(f"{pair:55s} {100 * result['mean_difference']:+.2f} (p = {result['p_randomisation']:.4f})")
