"""PNG plots with matplotlib's Agg backend: quality vs latency (eval) and latency vs K (bench)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def quality_vs_latency(report, path: str | Path, metric: str = "nDCG@10") -> Path:
    """One point per reranker: mean rerank latency per query (log scale) against ``metric``."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for row in report.results:
        if row.latency_ms_mean is None:
            ax.axhline(row.metrics[metric], linestyle="--", linewidth=1, color="grey")
            ax.annotate(f"{row.method} (no rerank)", (0.01, row.metrics[metric]), xycoords=("axes fraction", "data"), fontsize=8, va="bottom")
            continue
        ax.scatter([max(row.latency_ms_mean, 1e-3)], [row.metrics[metric]], s=40)
        ax.annotate(row.method, (max(row.latency_ms_mean, 1e-3), row.metrics[metric]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean rerank latency per query (ms, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"{report.dataset} {report.split}: {metric} vs latency (top-{report.depth})")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def latency_vs_k(ks: list[int], latencies_ms: dict[str, list[float | None]], path: str | Path) -> Path:
    """Median latency per method against the number of candidates K (log-log)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method, values in latencies_ms.items():
        points = [(k, v) for k, v in zip(ks, values) if v is not None]
        ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("candidates K")
    ax.set_ylabel("median rerank latency (ms)")
    ax.set_title("Rerank latency vs number of candidates")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
