"""The no-LM way to learn from feedback: remember it. For a new query, the passages that were 👍 for the most
similar past queries (nearest neighbours over query vectors) move up, the 👎 ones move down."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from resrank_rag.feedback.store import FeedbackList


class FeedbackMemory:
    """``adjust(query_vector, ids)``: per candidate, ``strength`` x the similarity-weighted sum of the labels
    (+1 👍, -1 👎) the ``neighbours`` most similar past queries (cosine >= ``min_similarity``) gave it."""

    def __init__(self, query_vectors: np.ndarray, ratings: Sequence[dict[str, int]], *, neighbours: int = 10,
                 min_similarity: float = 0.5, strength: float = 0.1):
        if len(query_vectors) != len(ratings):
            raise ValueError(f"{len(query_vectors)} query vectors for {len(ratings)} rated lists")
        if neighbours < 1 or not -1.0 <= min_similarity <= 1.0 or strength < 0:
            raise ValueError("need neighbours >= 1, min_similarity in [-1, 1] and strength >= 0")
        self.query_vectors = np.asarray(query_vectors, dtype=np.float32)
        if self.query_vectors.ndim != 2 and len(ratings):
            raise ValueError("query_vectors must be (number of rated lists, dim)")
        self.ratings = [dict(r) for r in ratings]
        self.neighbours = neighbours
        self.min_similarity = min_similarity
        self.strength = strength

    @classmethod
    def from_lists(cls, model, lists: Sequence[FeedbackList], **settings) -> "FeedbackMemory":
        """A memory of rated lists, their queries encoded once with ``model``'s encoder."""
        lists = [item for item in lists if item.ratings]
        vectors = model.encode_queries([item.query for item in lists]) if lists else np.zeros((0, model.embedding_dim))
        return cls(vectors, [item.ratings for item in lists], **settings)

    def __len__(self) -> int:
        return len(self.ratings)

    def adjust(self, query_vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(len(ids),) float32 score changes for the candidates ``ids`` of a query with this vector."""
        out = np.zeros(len(ids), dtype=np.float32)
        if not len(self) or not self.strength:
            return out
        similarity = self.query_vectors @ np.asarray(query_vector, dtype=np.float32)
        nearest = np.argsort(-similarity)[: self.neighbours]
        place = {i: n for n, i in enumerate(ids)}
        for past in nearest:
            if similarity[past] < self.min_similarity:
                break
            for chunk_id, label in self.ratings[past].items():
                if chunk_id in place:
                    out[place[chunk_id]] += float(similarity[past]) * label
        return self.strength * out

    def rerank(self, query_vector: np.ndarray, ids: Sequence[str], scores: Sequence[float]) -> np.ndarray:
        """``scores`` (any reranker's) with the memory's adjustment added."""
        return np.asarray(scores, dtype=np.float32) + self.adjust(query_vector, ids)
