"""Recipe probe on adapt's held-out part only (SciFact feedback N=400): held-out nDCG@10 trajectory per recipe."""
import sys, time, dataclasses; sys.path.insert(0, "benchmarks")  # run from the repository root, after benchmarks/feedback_loop.py made runs/feedback-loop/scifact
from pathlib import Path
import feedback_loop as fl
from resrank_rag import ResRank, DEFAULT_MODEL
from resrank_rag.adapt import adapt
from resrank_rag.adapt.run import default_stages
out = Path("runs/feedback-loop/scifact"); data = Path("../shared/data/scifact")
base = ResRank.from_pretrained(DEFAULT_MODEL, precision="auto")
index = fl.open_collection(base, data, "train", out)
fb = out / "feedback-400.jsonl"
def recipe(heads=3e-4, reranker=2e-4, distill=0.0, steps=100):
    prior, joint = default_stages(40, steps)
    joint = dataclasses.replace(joint, lr={**joint.lr, "heads": heads, "reranker": reranker},
                                distill_weight=distill, anchor="nolm")
    return [prior, joint]
variants = {"V0 default": recipe(), "V1 heads3e-5": recipe(heads=3e-5),
            "V2 heads3e-5 rr1e-4 distill0.5": recipe(heads=3e-5, reranker=1e-4, distill=0.5)}
for name in sys.argv[1:] or variants:
    t = time.monotonic()
    r = adapt(index, feedback=fb, out=Path("runs/probe") / name.split()[0], first_stage="hybrid",
              stages=variants[name], eval_every=20, patience=0, resume=False,
              ema_decay=None, refit_features=False)  # as measured: before these became adapt's defaults
    traj = [(h["step"], round(h["ndcg@10"], 4)) for h in r.history if "ndcg@10" in h]
    print("RESULT", name, round(time.monotonic() - t), traj, flush=True)
