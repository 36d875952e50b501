"""Reliability of the core API: hostile input, concurrency, determinism."""

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resrank_rag import ResRank
from resrank_rag.testing import perturb_heads, tiny_resrank

TEXTS = ["solar panels on roofs", "wind turbines offshore", "a recipe for bread", "nuclear power plants"]
QUERIES = [f"renewable energy question {i}" for i in range(50)]


@pytest.fixture(scope="module")
def trained_tiny():
    model = tiny_resrank()
    perturb_heads(model)
    return model


def as_pairs(results):
    return [(r.index, r.score) for r in results]


def test_eight_threads_give_the_serial_scores(trained_tiny):
    serial = [as_pairs(trained_tiny.rerank(q, TEXTS)) for q in QUERIES[:16]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda q: as_pairs(trained_tiny.rerank(q, TEXTS)), QUERIES[:16]))
    assert threaded == serial


def test_asyncio_gather_of_fifty_calls_gives_the_serial_scores(trained_tiny):
    serial = [as_pairs(trained_tiny.rerank(q, TEXTS)) for q in QUERIES]

    async def run_all():
        return await asyncio.gather(*(asyncio.to_thread(trained_tiny.rerank, q, TEXTS) for q in QUERIES))

    assert [as_pairs(r) for r in asyncio.run(run_all())] == serial


def test_same_checkpoint_gives_identical_results_across_loads(trained_tiny, tmp_path):
    trained_tiny.save_pretrained(tmp_path / "ckpt")
    first = ResRank.from_pretrained(tmp_path / "ckpt", precision="fp32").rerank(QUERIES[0], TEXTS)  # == the fp32 model in memory
    second = ResRank.from_pretrained(tmp_path / "ckpt", precision="fp32").rerank(QUERIES[0], TEXTS)
    assert first == second == trained_tiny.rerank(QUERIES[0], TEXTS)


def test_a_million_character_passage_is_truncated_with_a_warning(trained_tiny):
    huge = "energy " * 150_000
    with pytest.warns(UserWarning, match="1,050,000 characters"):
        results = trained_tiny.rerank(QUERIES[0], [huge, TEXTS[0]])
    assert sorted(r.index for r in results) == [0, 1]


def test_undecodable_bytes_are_replaced_not_fatal(trained_tiny):
    text = b"caf\xe9 \xff solar".decode("utf-8", errors="surrogateescape")
    results = trained_tiny.rerank(text, [text, TEXTS[0]])
    assert all(math.isfinite(r.score) for r in results) and results[0].text in (text, TEXTS[0])
    with pytest.raises(TypeError, match="decode it first"):
        trained_tiny.rerank(QUERIES[0], [b"raw bytes"])


def test_duplicate_candidates_are_each_ranked(trained_tiny):
    results = trained_tiny.rerank(QUERIES[0], [TEXTS[0], TEXTS[0], TEXTS[1]])
    assert sorted(r.index for r in results) == [0, 1, 2]


unicode_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=unicode_text, candidates=st.lists(unicode_text, max_size=12), top_n=st.one_of(st.none(), st.integers(-2, 15)))
def test_arbitrary_unicode_never_raises_undocumented_errors(trained_tiny, query, candidates, top_n):
    try:
        results = trained_tiny.rerank(query, candidates, top_n=top_n)
    except ValueError as error:  # documented: empty/whitespace query, top_n < 1
        assert not query.strip() or (top_n is not None and top_n < 1), error
        return
    assert query.strip() and (top_n is None or top_n >= 1)
    expected = len(candidates) if top_n is None else min(top_n, len(candidates))
    assert len(results) == expected
    assert len({r.index for r in results}) == expected and all(0 <= r.index < len(candidates) for r in results)
    assert all(type(r.score) is float and math.isfinite(r.score) for r in results)
    if top_n is None:
        assert sorted(r.index for r in results) == list(range(len(candidates)))


@settings(max_examples=25, deadline=None)
@given(vectors=st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=32, max_size=32), max_size=10))
def test_arbitrary_finite_vectors_give_a_permutation(trained_tiny, vectors):
    results = trained_tiny.rerank(QUERIES[0], vectors=np.array(vectors, dtype=np.float32).reshape(-1, 32))
    assert sorted(r.index for r in results) == list(range(len(vectors)))
    assert all(math.isfinite(r.score) for r in results)
