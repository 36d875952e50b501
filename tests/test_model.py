"""ResRank core behaviour on a tiny randomly initialised model."""

import numpy as np
import pytest
import torch

from resrank_rag import RerankResult, ResRank, ResRankConfig
from resrank_rag.encoder import DOCUMENT, embed_with_grad
from resrank_rag.testing import perturb_heads, tiny_resrank
from tests.samples import QUERY, TEXTS


def cosine_scores(model, query, texts):
    return model.encode(texts) @ model.encode_query(query)


class CountCalls:
    """Counts forward calls of a module."""

    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        self.calls += 1


def test_encode_shapes_and_normalisation(tiny):
    vectors = tiny.encode(TEXTS)
    assert vectors.shape == (5, tiny.embedding_dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    query = tiny.encode_query(QUERY)
    assert query.shape == (tiny.embedding_dim,)
    assert tiny.encode([]).shape == (0, tiny.embedding_dim)


def test_encode_batches_match_single_texts(tiny):
    together = tiny.encode(TEXTS, batch_size=2)
    alone = np.stack([tiny.encode([text])[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("order", ["given", "reverse", "dense"])
@pytest.mark.parametrize("position", ["marker", "query_end"])
def test_untrained_resrank_ranks_exactly_like_cosine(order, position):
    model = tiny_resrank(candidate_order=order, query_position=position)
    results = model.rerank(QUERY, TEXTS)
    expected = cosine_scores(model, QUERY, TEXTS)
    assert [r.index for r in results] == list(np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose([r.score for r in results], np.sort(expected)[::-1], atol=1e-5)


def test_trained_heads_change_scores_and_results_keep_caller_indices():
    model = tiny_resrank(candidate_order="dense")
    perturb_heads(model)
    results = model.rerank(QUERY, TEXTS)
    by_text = {r.text: r.score for r in results}
    assert not np.allclose(sorted(by_text.values()), sorted(cosine_scores(model, QUERY, TEXTS)), atol=1e-3)
    shuffled = [TEXTS[i] for i in (3, 0, 4, 2, 1)]
    again = model.rerank(QUERY, shuffled)
    for result in again:
        assert shuffled[result.index] == result.text
        assert result.score == pytest.approx(by_text[result.text], abs=1e-5)


def test_results_are_plain_floats_sorted_with_top_n(tiny):
    results = tiny.rerank(QUERY, TEXTS, top_n=3)
    assert len(results) == 3 and all(isinstance(r, RerankResult) for r in results)
    assert all(type(r.score) is float and type(r.index) is int for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert tiny.rerank(QUERY, TEXTS, top_n=50) == tiny.rerank(QUERY, TEXTS)


def test_vectors_and_texts_give_the_same_ranking_without_encoding_candidates(tiny):
    vectors = tiny.encode(TEXTS)
    from_texts = tiny.rerank(QUERY, TEXTS)
    encoder_calls = CountCalls(tiny.encoder)
    from_vectors = tiny.rerank(QUERY, vectors=vectors)
    both = tiny.rerank(QUERY, TEXTS, vectors=vectors)
    positional = tiny.rerank(QUERY, vectors)
    assert encoder_calls.calls == 3  # the query only, once per call
    assert [r.index for r in from_vectors] == [r.index for r in from_texts] == [r.index for r in positional]
    np.testing.assert_allclose([r.score for r in from_vectors], [r.score for r in from_texts], atol=1e-5)
    assert [r.text for r in both] == [r.text for r in from_texts]
    assert all(r.text is None for r in from_vectors)


def test_query_vector_skips_query_encoding(tiny):
    vectors = tiny.encode(TEXTS)
    encoder_calls = CountCalls(tiny.encoder)
    results = tiny.rerank(QUERY, vectors=vectors, query_vector=tiny.encode_query(QUERY))
    assert encoder_calls.calls == 1 and len(results) == 5


def test_batched_queries_with_padding_match_single_calls():
    model = tiny_resrank()
    perturb_heads(model)
    queries = [QUERY, "what is the capital of france, a long question with many more tokens", "fruit"]
    lists = [TEXTS, TEXTS[:2], TEXTS[1:4]]
    batched = model.rerank_batch(queries, lists)
    for query, texts, got in zip(queries, lists, batched):
        single = model.rerank(query, texts)
        assert [r.index for r in got] == [r.index for r in single]
        np.testing.assert_allclose([r.score for r in got], [r.score for r in single], atol=1e-5)


def test_two_hundred_and_fifty_candidates_rank_in_one_forward(tiny):
    vectors = np.random.default_rng(0).normal(size=(250, tiny.embedding_dim)).astype(np.float32)
    tiny.rerank(QUERY, vectors=vectors[:2])  # the first inference call also computes the prompt prefix's states
    forward_calls = CountCalls(tiny.reranker)
    results = tiny.rerank(QUERY, vectors=vectors)
    assert forward_calls.calls == 1
    assert sorted(r.index for r in results) == list(range(250))


def test_more_candidates_than_the_context_is_a_clear_error(tiny):
    vectors = np.ones((1100, tiny.embedding_dim), dtype=np.float32)
    with pytest.raises(ValueError, match="at most"):
        tiny.rerank(QUERY, vectors=vectors)
    assert 900 < tiny.max_candidates(QUERY) < 1024
    assert tiny.max_candidates(QUERY) + tiny.reranker_input_length(QUERY, 0) == 1024
    assert tiny.reranker_input_length(QUERY, 7) == tiny.reranker_input_length(QUERY, 0) + 7


def test_scores_are_differentiable_end_to_end(tiny):
    perturb_heads(tiny)
    passages = embed_with_grad(tiny.encoder, TEXTS, DOCUMENT)
    scores = tiny.score_lists([QUERY], [passages])[0]
    scores.sum().backward()
    for name, module in [("encoder", tiny.encoder), ("reranker", tiny.reranker), ("projector", tiny.projector)]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name


def test_rank_prior_adds_minus_w_log_rank_in_the_callers_order():
    model = tiny_resrank(candidate_order="dense")  # fed in dense order; the prior follows the caller's order
    perturb_heads(model)
    base = {r.index: r.score for r in model.rerank(QUERY, TEXTS)}
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.3)
    with_prior = {r.index: r.score for r in model.rerank(QUERY, TEXTS)}
    for index, score in base.items():
        assert with_prior[index] == pytest.approx(score - 0.3 * np.log(index + 1), abs=1e-5)
    model.config.rank_prior = False  # for candidates that arrive in no particular order
    assert {r.index: r.score for r in model.rerank(QUERY, TEXTS)} == pytest.approx(base, abs=1e-6)


def test_save_and_load_reproduce_scores_bit_identically(tiny, tmp_path):
    perturb_heads(tiny)
    with torch.no_grad():
        tiny.rank_prior_weight.fill_(0.05)
    vectors = tiny.encode(TEXTS)
    before = tiny.rerank(QUERY, TEXTS, vectors=vectors)
    tiny.save_pretrained(tmp_path / "ckpt")
    loaded = ResRank.from_pretrained(tmp_path / "ckpt", precision="fp32")  # bit-identical needs fp32, not auto
    assert loaded.config == tiny.config
    assert loaded.rerank(QUERY, TEXTS, vectors=vectors) == before
    np.testing.assert_array_equal(loaded.encode(TEXTS), vectors)


def test_lora_adapter_over_a_referenced_backbone_round_trips(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = tiny_resrank()
    model.reranker.save_pretrained(tmp_path / "base-llama")
    model.reranker_tokenizer.save_pretrained(tmp_path / "base-llama")
    model.config.reranker, model.config.reranker_weights = str(tmp_path / "base-llama"), "reference"
    model.reranker = get_peft_model(model.reranker, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    perturb_heads(model)
    before = model.rerank(QUERY, TEXTS)
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "reranker" / "adapter_config.json").exists()
    assert not (tmp_path / "ckpt" / "reranker" / "model.safetensors").exists()
    assert ResRank.from_pretrained(tmp_path / "ckpt", precision="fp32", merge_lora=False).rerank(QUERY, TEXTS) == before  # adapters kept: bit-identical


def test_untrained_model_is_reproducible_from_its_seed():
    assert tiny_resrank().rerank(QUERY, TEXTS) == tiny_resrank().rerank(QUERY, TEXTS)
    a, b = tiny_resrank(seed=0), tiny_resrank(seed=0)
    assert torch.equal(a.marker, b.marker)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(query="", candidates=TEXTS), ValueError, "empty"),
        (dict(query="   \n", candidates=TEXTS), ValueError, "empty"),
        (dict(query=None, candidates=TEXTS), TypeError, "string"),
        (dict(query=QUERY, candidates=TEXTS, top_n=0), ValueError, "top_n"),
        (dict(query=QUERY, candidates=["ok", None]), TypeError, r"candidates\[1\]"),
        (dict(query=QUERY, candidates="one string"), TypeError, "list of strings"),
        (dict(query=QUERY, candidates=TEXTS, vectors=np.ones((5, 7))), ValueError, "shape"),
        (dict(query=QUERY, candidates=TEXTS, vectors=np.ones((4, 32))), ValueError, "one vector per text"),
        (dict(query=QUERY, vectors=np.full((2, 32), np.nan)), ValueError, "NaN"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny.rerank(**kwargs)


def test_empty_candidate_list_returns_nothing(tiny):
    assert tiny.rerank(QUERY, []) == []
    assert tiny.rerank(QUERY, vectors=np.zeros((0, tiny.embedding_dim))) == []


def test_config_validation():
    with pytest.raises(ValueError, match="query"):
        ResRankConfig(prompt_template="no placeholder")
    with pytest.raises(ValueError, match="pooling"):
        ResRankConfig(pooling="max")
    with pytest.raises(ValueError, match="identity"):
        tiny_resrank(projector="identity")
    assert ResRankConfig.from_dict(ResRankConfig().to_dict()) == ResRankConfig()


def test_no_residual_ablation_scores_from_the_heads_alone():
    model = tiny_resrank(residual=False)
    results = model.rerank(QUERY, TEXTS)
    assert all(np.isfinite(r.score) and -1.0 <= r.score <= 1.0 for r in results)
    dense = cosine_scores(model, QUERY, TEXTS)
    assert not np.allclose(sorted(r.score for r in results), np.sort(dense), atol=1e-3)  # not the encoder's cosine
    assert tiny_resrank(residual=False).rerank(QUERY, TEXTS) == results  # random heads, seeded
