"""numpy's BLAS runs single-threaded around embedded-Qdrant calls (resrank_rag/blas_threads.py)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from resrank_rag.blas_threads import single_threaded_blas
from resrank_rag.index import Document, ResRankIndex
from resrank_rag.testing import tiny_resrank


def _blas_threads() -> list[int]:
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # numpy's BLAS is loaded
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_single_threaded_blas_limits_and_restores():
    before = _blas_threads()
    assert before, "numpy should load a BLAS library"
    with single_threaded_blas():
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_index_queries_qdrant_with_single_threaded_blas(first_stage):
    index = ResRankIndex(tiny_resrank(), "docs", path=":memory:")
    index.index([Document(f"d{i}", f"passage {i} about cats and dogs") for i in range(6)])
    seen = []
    query_points = index.client.query_points

    def recording(*args, **kwargs):
        seen.append(set(_blas_threads()))
        return query_points(*args, **kwargs)

    index.client.query_points = recording
    hits = index.search("cats", k=4, top_n=2, first_stage=first_stage)
    assert len(hits) == 2 and seen == [{1}]
