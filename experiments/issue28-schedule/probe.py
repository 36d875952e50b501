"""Recipe probe on adapt's held-out part only (SciFact feedback N=400): the LoRA stage's rates constant after
warm-up (the benchmark's seeds 0 and 1 give that curve) against linear decay to zero, per seed.

    python experiments/issue28-schedule/probe.py 0 1    # seeds; run from the repository root after
                                                       # benchmarks/feedback_loop.py --n 400 made runs/feedback-loop/scifact
"""
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, "benchmarks")
import feedback_loop as fl  # noqa: E402

from resrank_rag import DEFAULT_MODEL, ResRank  # noqa: E402
from resrank_rag.adapt import adapt  # noqa: E402
from resrank_rag.adapt.run import default_stages  # noqa: E402

out, data = Path("runs/feedback-loop/scifact"), Path("../shared/data/scifact")
index = fl.open_collection(ResRank.from_pretrained(DEFAULT_MODEL, precision="auto"), data, "train", out)
prior, joint = default_stages(40, 300)
stages = [prior, dataclasses.replace(joint, schedule="linear")]
for seed in [int(s) for s in sys.argv[1:]] or [0]:
    started = time.monotonic()
    result = adapt(index, feedback=out / "feedback-400.jsonl", out=Path("runs/probe") / f"linear-seed{seed}",
                   first_stage="hybrid", stages=stages, eval_every=50, patience=0, resume=False, seed=seed,
                   ema_decay=None, refit_features=False)  # as measured: before these became adapt's defaults
    curve = [(h["step"], round(h["ndcg@10"], 4)) for h in result.history if "ndcg@10" in h]
    print("RESULT linear seed", seed, round(time.monotonic() - started), curve, flush=True)
