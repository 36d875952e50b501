"""Per-candidate features that the reranker LM reads beside each passage vector: first-stage rank,
dense score, and lexical match over the list's own texts. Each costs well under a millisecond per list."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

FEATURE_WIDTHS = {"rank": 1, "cosine": 3, "lexical": 4}
"""Columns per feature kind, in ``ResRankConfig.candidate_features`` order."""
_WORD = re.compile(r"\w+")
_RANK_SCALE = math.log(100.0)


def feature_width(kinds: Sequence[str]) -> int:
    return sum(FEATURE_WIDTHS[kind] for kind in kinds)


@lru_cache(maxsize=1)
def _stem():
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return Stemmer.Stemmer("english").stemWords, frozenset(STOPWORDS_EN_PLUS)


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens without English stopwords."""
    stem, stop = _stem()
    return stem([word for word in _WORD.findall(text.lower()) if word not in stop])


def lexical_features(query: str, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """(K, 4): BM25 over the K texts as their own collection (divided by the list's maximum), share of the
    query's distinct terms present, the same share weighted by in-list IDF, and a 1 saying text was given."""
    query_terms = list(dict.fromkeys(terms(query)))
    docs = [Counter(terms(text)) for text in texts]
    out = np.zeros((len(texts), 4), dtype=np.float32)
    out[:, 3] = 1.0
    if not query_terms or not docs:
        return out
    n = len(docs)
    lengths = np.array([sum(doc.values()) for doc in docs], dtype=np.float32)
    average = max(float(lengths.mean()), 1.0)
    frequency = {t: sum(t in doc for doc in docs) for t in query_terms}
    idf = {t: math.log(1.0 + (n - df + 0.5) / (df + 0.5)) for t, df in frequency.items()}
    total_idf = sum(idf.values()) or 1.0
    for i, doc in enumerate(docs):
        norm = k1 * (1 - b + b * lengths[i] / average)
        out[i, 0] = sum(idf[t] * doc[t] * (k1 + 1) / (doc[t] + norm) for t in query_terms if t in doc)
        present = [t for t in query_terms if t in doc]
        out[i, 1] = len(present) / len(query_terms)
        out[i, 2] = sum(idf[t] for t in present) / total_idf
    top = out[:, 0].max()
    if top > 0:
        out[:, 0] /= top
    return out


def candidate_features(kinds: Sequence[str], cosines: np.ndarray, query: str, texts: Sequence[str] | None) -> np.ndarray:
    """(K, feature_width(kinds)) float32 features in the caller's candidate order (rank 1 = first given).

    ``cosines`` are the dense scores; ``texts`` None masks the lexical columns (all zero, 'text given' 0).
    """
    k = len(cosines)
    cosines = np.asarray(cosines, dtype=np.float32)
    columns = []
    for kind in kinds:
        if kind == "rank":
            columns.append((np.log(np.arange(1, k + 1, dtype=np.float32)) / _RANK_SCALE)[:, None])
        elif kind == "cosine":
            spread = float(cosines.std()) if k > 1 else 0.0
            standard = (cosines - cosines.mean()) / spread if spread > 1e-6 else np.zeros_like(cosines)
            columns.append(np.stack([cosines, standard / 3.0, cosines - cosines.max()], axis=1))
        elif kind == "lexical":
            if texts is not None and len(texts) != k:
                raise ValueError(f"got {len(texts)} texts for {k} candidates")
            columns.append(np.zeros((k, 4), np.float32) if texts is None else lexical_features(query, texts))
        else:
            raise ValueError(f"unknown candidate feature {kind!r}; choose from {tuple(FEATURE_WIDTHS)}")
    return np.concatenate(columns, axis=1).astype(np.float32) if columns else np.zeros((k, 0), np.float32)
