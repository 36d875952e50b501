"""RerankResult: one reranked candidate; ``ranked`` turns a list's scores into results, best first."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RerankResult:
    """A candidate after reranking: its index in the caller's list, a plain float score, its text if known."""

    index: int
    score: float
    text: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ranked(scores: np.ndarray, texts: list[str] | None, top_n: int | None) -> list[RerankResult]:
    """The ``top_n`` best candidates (all when None), best first; ties keep the caller's order."""
    order = np.argsort(-scores, kind="stable")[:top_n]
    return [RerankResult(int(i), float(scores[i]), None if texts is None else texts[i]) for i in order]
