"""The prompt prefix's cached keys and values (resrank_rag/prompt_cache.py): same scores, fresh after weight changes."""

import numpy as np
import pytest
import torch

from resrank_rag import prompt_cache
from resrank_rag.precision import apply_precision
from resrank_rag.testing import perturb_heads, tiny_resrank

QUERIES = ["how do cats purr", "why is the sky blue on a clear summer afternoon"]
TEXTS = [f"passage {i} about {topic}" for i, topic in enumerate(["cats", "dogs", "purring", "engines", "sky"] * 3)]


@pytest.fixture()
def model():
    model = tiny_resrank()
    perturb_heads(model)
    return model


def _scores(model, queries=QUERIES, cached=True):
    """Scores per query (candidate order), one padded batch; ``cached=False`` runs the full prompt."""
    kept = model._prefix_cache.prefix_ids
    if not cached:
        model._prefix_cache.prefix_ids = []
    try:
        lists = [TEXTS, TEXTS[:4]][: len(queries)]
        results = model.rerank_batch(queries, lists)
    finally:
        model._prefix_cache.prefix_ids = kept
    return [np.array([r.score for r in sorted(rs, key=lambda r: r.index)]) for rs in results]


@pytest.mark.parametrize("query_position", ["marker", "query_end"])
def test_cached_prefix_gives_the_scores_of_the_full_prompt(query_position):
    model = tiny_resrank(query_position=query_position)
    perturb_heads(model)
    assert len(model._prefix_cache) > 0
    for got, expected in zip(_scores(model), _scores(model, cached=False)):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert model._prefix_cache._states is not None  # the cached path really ran
    assert model._prefix_cache._states[0][0].shape[2] == len(model._prefix_cache)


def test_prefix_states_follow_in_place_weight_changes(model):
    before = _scores(model)
    first = model._prefix_cache._states
    with torch.no_grad():  # what an optimizer step does
        for parameter in model.reranker.parameters():
            parameter.mul_(1.5)
    after = _scores(model)
    assert model._prefix_cache._states is not first
    for got, expected in zip(after, _scores(model, cached=False)):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(before[0], after[0])


def test_precision_change_recomputes_the_prefix(model):
    _scores(model)
    apply_precision(model, "bf16")
    assert model._prefix_cache._states is None  # cleared
    _scores(model)
    assert model._prefix_cache._states[0][0].dtype == torch.bfloat16


def test_training_forwards_do_not_use_the_cache(model):
    vectors = torch.from_numpy(model.encode(TEXTS))
    scores = model.score_lists(QUERIES[:1], [vectors])[0]
    assert scores.requires_grad and model._prefix_cache._states is None
    scores.sum().backward()
    embed = model.reranker.get_input_embeddings().weight.grad
    prefix_rows = embed[model._prefix_cache.prefix_ids].abs().sum()
    assert prefix_rows > 0  # gradients reach the prefix tokens' embeddings


def test_a_prefix_that_does_not_reproduce_the_full_forward_is_not_used(model, monkeypatch):
    monkeypatch.setattr(prompt_cache, "AGREEMENT", -1.0)  # as a bidirectional LM would fail the check
    for got, expected in zip(_scores(model), _scores(model, cached=False)):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert model._prefix_cache._states is None and model._prefix_cache._module() is model.reranker
