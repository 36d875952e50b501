"""Checking what callers pass to ``ResRank`` (queries, texts, vectors, candidate lists), with errors that
say what to pass instead."""

from __future__ import annotations

import numpy as np
import torch


def check_query(query) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty or whitespace; pass the user's question text")
    return query


def check_top_n(top_n) -> int | None:
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ValueError(f"top_n must be a positive integer or None, got {top_n!r}")
    return top_n


def check_texts(texts, what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not one string; wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if isinstance(text, bytes):
            raise TypeError(f"{what}[{i}] is bytes; decode it first, e.g. data.decode('utf-8', errors='replace')")
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__}; every item must be a string")
    return texts


def check_vectors(vectors, dim: int, what: str) -> np.ndarray:
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().numpy()
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be numbers of shape (n, {dim}): {error}") from None
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}) for this model, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return array


def _looks_like_vectors(candidates) -> bool:
    if isinstance(candidates, (np.ndarray, torch.Tensor)):
        return True
    first = candidates[0] if len(candidates) else None
    return first is not None and not isinstance(first, (str, bytes)) and hasattr(first, "__len__")


def split_candidates(candidates, vectors, dim: int) -> tuple[list[str] | None, np.ndarray | None]:
    """Normalise one candidate list into (texts or None, vectors or None)."""
    if candidates is None and vectors is None:
        raise ValueError("pass candidates (texts or vectors) or vectors=")
    if candidates is not None and _looks_like_vectors(candidates):
        if vectors is not None:
            raise ValueError("candidates are already vectors; pass texts as candidates to use vectors=")
        candidates, vectors = None, candidates
    texts = None if candidates is None else check_texts(candidates, "candidates")
    if vectors is not None:
        vectors = check_vectors(vectors, dim, "vectors") if len(vectors) else np.zeros((0, dim), np.float32)
        if texts is not None and len(texts) != len(vectors):
            raise ValueError(f"got {len(texts)} texts but {len(vectors)} vectors; give one vector per text")
    return texts, vectors


def split_candidate_lists(count: int, candidates, vectors, dim: int) -> list[tuple[list[str] | None, np.ndarray | None]]:
    """``split_candidates`` for each of ``count`` queries' lists (and their ``vectors`` entries, if given)."""
    if len(candidates) != count or (vectors is not None and len(vectors) != count):
        raise ValueError("give one candidate list (and one vectors entry) per query")
    return [split_candidates(c, None if vectors is None else vectors[i], dim) for i, c in enumerate(candidates)]


def check_query_vectors(query_vectors, count: int, dim: int) -> np.ndarray | None:
    """(count, dim) float32 query vectors, or None when none were given."""
    if query_vectors is None:
        return None
    array = check_vectors(query_vectors, dim, "query_vectors")
    if len(array) != count:
        raise ValueError(f"got {len(array)} query_vectors for {count} queries; give one vector per query")
    return array
