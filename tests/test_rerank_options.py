"""Per-call options and input checks of ResRank.rerank / rerank_batch / from_pretrained."""

import numpy as np
import pytest
import torch

from resrank_rag import ResRank
from resrank_rag.testing import perturb_heads, tiny_resrank
from tests.samples import QUERY, TEXTS


@pytest.fixture(scope="module")
def model():
    """Non-zero heads, a non-zero prior and a per-query prior head: every part of the score is live."""
    model = tiny_resrank(adaptive_prior=True)
    perturb_heads(model)
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.3)
        model.prior_head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
        model.prior_head.bias.fill_(0.2)
    return model


def scores(results):
    return {r.index: r.score for r in results}


def test_ordered_is_per_call_and_leaves_the_config_alone(model):
    assert model.config.rank_prior
    default = scores(model.rerank(QUERY, TEXTS))
    assert scores(model.rerank(QUERY, TEXTS, ordered=True)) == default
    unordered = scores(model.rerank(QUERY, TEXTS, ordered=False))
    assert model.config.rank_prior  # nothing global changed
    assert unordered != pytest.approx(default, abs=1e-4)
    model.config.rank_prior = False
    try:
        assert scores(model.rerank(QUERY, TEXTS)) == pytest.approx(unordered, abs=1e-6)
        assert scores(model.rerank(QUERY, TEXTS, ordered=True)) == pytest.approx(default, abs=1e-6)
    finally:
        model.config.rank_prior = True


def test_unordered_scores_have_no_prior_at_all_not_even_the_per_query_head(model):
    """ordered=False switches off both the learned prior and the per-query prior head."""
    unordered = scores(model.rerank(QUERY, TEXTS, ordered=False))
    saved = {name: p.detach().clone() for name, p in model.named_parameters() if "prior" in name}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in saved:
                parameter.zero_()
        expected = scores(model.rerank(QUERY, TEXTS))  # ordered, but with every prior weight at zero
        for name, parameter in model.named_parameters():
            if name in saved:
                parameter.copy_(saved[name])
    assert set(saved) == {"rank_prior_weight", "prior_head.weight", "prior_head.bias"}
    assert unordered == pytest.approx(expected, abs=1e-6)
    assert scores(model.rerank(QUERY, TEXTS)) != pytest.approx(expected, abs=1e-4)


def test_rerank_batch_takes_ordered_and_matches_rerank(model):
    batch = model.rerank_batch([QUERY, "capital of France"], [TEXTS, TEXTS[::-1]], ordered=False)
    for got, query, texts in zip(batch, [QUERY, "capital of France"], [TEXTS, TEXTS[::-1]]):
        alone = model.rerank(query, texts, ordered=False)  # padding may change float rounding, not the result
        assert [(r.index, r.text) for r in got] == [(r.index, r.text) for r in alone]
        assert [r.score for r in got] == pytest.approx([r.score for r in alone], abs=1e-6)
    with pytest.raises(TypeError, match="ordered"):
        model.rerank(QUERY, TEXTS, ordered="yes")


def test_rerank_batch_needs_one_query_vector_per_query(model):
    query_vectors = model.encode_queries([QUERY, QUERY, QUERY])
    with pytest.raises(ValueError, match="3 query_vectors for 2 queries"):
        model.rerank_batch([QUERY, QUERY], [TEXTS, TEXTS], query_vectors=query_vectors)


def test_query_vectors_are_normalised_so_their_scale_does_not_matter(model):
    query_vector = model.encode_query(QUERY)
    vectors = model.encode(TEXTS)
    once = scores(model.rerank(QUERY, TEXTS, vectors=vectors, query_vector=query_vector))
    tripled = scores(model.rerank(QUERY, TEXTS, vectors=vectors, query_vector=3 * query_vector))
    assert tripled == pytest.approx(once, abs=1e-5)


def test_a_packaged_checkpoint_without_its_config_raises(tmp_path, monkeypatch):
    from resrank_rag import loading

    (tmp_path / loading.DEFAULT_MODEL).mkdir()  # the folder is there, its config is not
    monkeypatch.setattr(loading, "PACKAGED_CHECKPOINTS", tmp_path)
    built = []
    monkeypatch.setattr(ResRank, "from_config", classmethod(lambda cls, config: built.append(config)))
    with pytest.raises(FileNotFoundError, match="missing its resrank_config.json.*reinstall"):
        ResRank.from_pretrained(loading.DEFAULT_MODEL)
    assert built == []  # no silent untrained model
    assert ResRank.untrained_config(loading.DEFAULT_MODEL).name == loading.DEFAULT_MODEL


def test_scores_without_lm_take_ordered(model):
    query = torch.from_numpy(model.encode_query(QUERY))[None]
    vectors = torch.from_numpy(model.encode(TEXTS))
    ordered = model.scores_without_lm(query, [vectors])[0]
    unordered = model.scores_without_lm(query, [vectors], ordered=False)[0]
    np.testing.assert_allclose((ordered - unordered).numpy(), -0.3 * np.log(np.arange(1, 6)), atol=1e-6)
