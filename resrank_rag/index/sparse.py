"""The sparse (BM25) side: bm25s tokens hashed to stable indices, weighted as BM25 term frequencies."""

from __future__ import annotations

import hashlib

from qdrant_client import models

BM25_K1, BM25_B = 1.5, 0.75


def token_index(token: str) -> int:
    """A stable 32-bit sparse index for a token (the same in every process and on every machine)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")


def tokenize(texts: list[str]) -> list[dict[int, int]]:
    """Per text, token index -> count: bm25s tokens (English stopwords removed, Snowball-stemmed)."""
    import bm25s
    import Stemmer

    tokenized = bm25s.tokenize(
        texts, stopwords="en", stemmer=Stemmer.Stemmer("english").stemWords, return_ids=True, show_progress=False
    )
    index_of = {i: token_index(token) for token, i in tokenized.vocab.items() if token}
    counts = []
    for ids in tokenized.ids:
        bag: dict[int, int] = {}
        for i in ids:
            if i in index_of:
                bag[index_of[i]] = bag.get(index_of[i], 0) + 1
        counts.append(bag)
    return counts


def bm25_vectors(texts: list[str], avgdl: float) -> list[models.SparseVector]:
    """BM25 term weights tf / (tf + k1 (1 - b + b dl / avgdl)); Qdrant multiplies in the IDF at query time."""
    vectors = []
    for bag in tokenize(texts):
        norm = BM25_K1 * (1 - BM25_B + BM25_B * sum(bag.values()) / avgdl)
        indices = sorted(bag)
        vectors.append(models.SparseVector(indices=indices, values=[bag[i] / (bag[i] + norm) for i in indices]))
    return vectors
