"""Loss and dev-metric curves of a training run, as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _smooth(values: list[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.concatenate([values[: window - 1], np.convolve(values, kernel, mode="valid")])


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Left: training losses per step (moving average); right: dev nDCG@10 of the model and of dense."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h for h in history if "loss" in h]
    evals = [h for h in history if "ndcg@10" in h]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    window = max(1, len(steps) // 50)
    for key in ("loss", "listwise", "infonce", "distill", "margin"):
        rows = [h for h in steps if key in h]
        if rows:
            left.plot([h["step"] for h in rows], _smooth([h[key] for h in rows], window), label=key)
    for boundary in sorted({h["stage_start"] for h in steps if h.get("stage_start")}):
        left.axvline(boundary, color="grey", linestyle=":")
    left.set(xlabel="step", ylabel="loss", title="training losses")
    if steps:
        left.legend()
    if evals:
        right.plot([h["step"] for h in evals], [h["ndcg@10"] for h in evals], marker="o", label="ResRank")
        with_nolm = [h for h in evals if "nolm_ndcg@10" in h]
        if with_nolm:
            right.plot([h["step"] for h in with_nolm], [h["nolm_ndcg@10"] for h in with_nolm], linestyle="-.", label="LM branch off")
        right.plot([h["step"] for h in evals], [h["dense_ndcg@10"] for h in evals], linestyle="--", label="dense (own encoder)")
        right.legend()
    right.set(xlabel="step", ylabel="nDCG@10", title="dev")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
