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
    """Median latency per method against the number of candidates K (log-log). Rows named
    ``method [precision]`` (``resrank bench``) share a colour per method and a line style per precision."""
    fig, ax = plt.subplots(figsize=(9.5, 5))
    def split(name: str) -> tuple[str, str]:
        method, bracket, precision = name[:-1].rpartition(" [") if name.endswith("]") else ("", "", "")
        return (method, precision) if bracket else (name, "")

    methods = list(dict.fromkeys(split(name)[0] for name in latencies_ms))
    styles = {"fp32": "-", "bf16": "--", "fp16": "-.", "int8": ":"}
    for name, values in latencies_ms.items():
        method, precision = split(name)
        points = [(k, v) for k, v in zip(ks, values) if v is not None]
        ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=name,
                color=f"C{methods.index(method) % 10}", linestyle=styles.get(precision, "-"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("candidates K")
    ax.set_ylabel("median rerank latency (ms)")
    ax.set_title("Rerank latency vs number of candidates")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the lines stay readable
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
