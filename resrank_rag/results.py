"""RerankResult: one reranked candidate."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RerankResult:
    """A candidate after reranking: its index in the caller's list, a plain float score, its text if known."""

    index: int
    score: float
    text: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
