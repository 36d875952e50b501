"""The LM branch's optional parts (candidate features, per-query prior, score head, fewer layers) and its
LM-off baseline, on a tiny randomly initialised model."""

import numpy as np
import pytest
import torch

from resrank_rag import ResRank
from resrank_rag.features import candidate_features, feature_width, lexical_features
from resrank_rag.testing import perturb_heads, tiny_resrank

QUERY = "which planet has rings"
TEXTS = [
    "Bananas are rich in potassium.",
    "Saturn has a bright ring system made of ice; the planet's rings are wide.",
    "Jupiter is the largest planet.",
    "Paris is the capital of France.",
]
ALL_PARTS = dict(candidate_features=["rank", "cosine", "lexical"], adaptive_prior=True, score_head=True)


def lm_off(model, query, texts, vectors=None):
    """The documented LM-off formula: cosine plus -w_rank * ln(rank), by hand."""
    vectors = model.encode(texts) if vectors is None else vectors
    cosine = vectors @ model.encode_query(query)
    return cosine - float(model.rank_prior_weight.detach()) * np.log(np.arange(1, len(texts) + 1))


def scores(model, query, texts, **kwargs):
    out = np.zeros(len(texts))
    for result in model.rerank(query, texts, **kwargs):
        out[result.index] = result.score
    return out


def test_lexical_features_see_query_terms_and_mask_without_texts():
    features = lexical_features(QUERY, TEXTS)
    assert features.shape == (4, 4)
    assert int(np.argmax(features[:, 0])) == 1 and features[1, 0] == pytest.approx(1.0)  # BM25 / list max
    assert features[0, 1] == 0 and features[1, 1] == pytest.approx(1.0)  # 'planet' and 'ring' (stemmed) present
    assert features[2, 1] == pytest.approx(0.5)  # only 'planet'
    assert (features[:, 3] == 1).all()
    masked = candidate_features(["lexical"], np.zeros(4), QUERY, None)
    assert not masked.any()


def test_rank_and_cosine_columns():
    cosines = np.array([0.2, 0.9, 0.5], dtype=np.float32)
    features = candidate_features(["rank", "cosine"], cosines, QUERY, None)
    assert features.shape == (3, feature_width(["rank", "cosine"])) == (3, 4)
    assert features[0, 0] == 0 and np.all(np.diff(features[:, 0]) > 0)  # ln(rank), rank 1 first
    np.testing.assert_allclose(features[:, 1], cosines)
    assert features[1, 3] == 0 and features[0, 3] == pytest.approx(-0.7)  # distance to the list's best
    with pytest.raises(ValueError, match="texts for"):
        candidate_features(["lexical"], cosines, QUERY, ["one text"])


def test_untrained_model_with_every_part_ranks_exactly_like_lm_off():
    model = tiny_resrank(**ALL_PARTS)
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.05)
    np.testing.assert_allclose(scores(model, QUERY, TEXTS), lm_off(model, QUERY, TEXTS), atol=1e-5)


def test_scores_without_lm_is_the_formula_and_ignores_the_heads():
    model = tiny_resrank(**ALL_PARTS)
    perturb_heads(model)
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.05)
    vectors = model.encode(TEXTS)
    query = torch.from_numpy(model.encode_query(QUERY))[None]
    got = model.scores_without_lm(3 * query, [torch.from_numpy(vectors)])[0].numpy()  # query scale is irrelevant
    np.testing.assert_allclose(got, lm_off(model, QUERY, TEXTS, vectors), atol=1e-5)
    assert not np.allclose(scores(model, QUERY, TEXTS), got, atol=1e-3)


def test_trained_parts_move_scores_and_lexical_features_need_the_texts():
    model = tiny_resrank(**ALL_PARTS)
    perturb_heads(model)
    with torch.no_grad():
        model.score_head.weight.normal_(0, 0.5)
        model.prior_head.weight.normal_(0, 0.5)
    vectors = model.encode(TEXTS)
    with_texts = scores(model, QUERY, TEXTS, vectors=vectors)
    vectors_only = scores(model, QUERY, vectors)
    assert not np.allclose(with_texts, vectors_only, atol=1e-4)
    no_lexical = tiny_resrank(candidate_features=["rank", "cosine"], adaptive_prior=True, score_head=True)
    perturb_heads(no_lexical)
    np.testing.assert_allclose(scores(no_lexical, QUERY, TEXTS, vectors=vectors), scores(no_lexical, QUERY, vectors), atol=1e-5)


def test_query_vectors_are_normalised():
    model = tiny_resrank(**ALL_PARTS)
    perturb_heads(model)
    vectors = model.encode(TEXTS)
    query = model.encode_query(QUERY)
    np.testing.assert_allclose(scores(model, QUERY, vectors, query_vector=query),
                               scores(model, QUERY, vectors, query_vector=3 * query), atol=1e-5)


def test_every_part_gets_gradient_once_the_heads_are_non_zero():
    model = tiny_resrank(**ALL_PARTS)
    perturb_heads(model, scale=0.1)
    with torch.no_grad():
        model.score_head.weight.normal_(0, 0.1)
        model.prior_head.weight.normal_(0, 0.1)
    vectors = torch.from_numpy(model.encode(TEXTS))
    out = model.score_lists([QUERY], [vectors], torch.from_numpy(model.encode_query(QUERY))[None], [TEXTS])[0]
    (out * torch.arange(4.0)).sum().backward()
    for module in (model.feature_projector, model.prior_head, model.score_head, model.projector):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_reranker_layers_keeps_the_first_layers_and_survives_save_and_load(tmp_path):
    full = tiny_resrank()
    cut = tiny_resrank(reranker_layers=1, **ALL_PARTS)
    assert len(full.reranker.layers) == 2 and len(cut.reranker.layers) == 1
    assert cut.reranker.config.num_hidden_layers == 1
    perturb_heads(cut)
    cut.save_pretrained(tmp_path / "cut")
    loaded = ResRank.from_pretrained(tmp_path / "cut", precision="fp32")  # compared bit for bit with the fp32 model
    assert len(loaded.reranker.layers) == 1
    np.testing.assert_array_equal(scores(loaded, QUERY, TEXTS), scores(cut, QUERY, TEXTS))


def test_unknown_feature_is_a_clear_error():
    from resrank_rag import ResRankConfig

    with pytest.raises(ValueError, match="candidate_features"):
        ResRankConfig(candidate_features=["bm25"])
    with pytest.raises(ValueError, match="reranker_layers"):
        ResRankConfig(reranker_layers=0)
