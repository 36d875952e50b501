"""Metrics, fusion, run reading and the fulltext baselines, on hand-checkable cases."""

import math

import numpy as np
import pytest
import torch

from resrank_rag.evaluation.beir import read_trec_run
from resrank_rag.evaluation.first_stage import reciprocal_rank_fusion
from resrank_rag.evaluation.metrics import quality
from resrank_rag.evaluation.rerankers import FulltextListwiseReranker, PointwiseReranker, build_rerankers


def test_metrics_on_a_hand_computed_case():
    qrels = {"q1": {"a": 2, "b": 0, "c": 1}, "q2": {"d": 1}}
    run = {"q1": [("b", 3.0), ("a", 2.0), ("x", 1.0)], "q2": [("y", 2.0), ("z", 1.5)]}
    got = quality(qrels, run)
    # q1: trec_eval's nDCG uses the grade as gain: DCG = 0 + 2/log2(3); ideal = 2 + 1/log2(3).
    dcg = 2 / math.log2(3)
    ideal = 2 + 1 / math.log2(3)
    assert got["nDCG@10"] == pytest.approx((dcg / ideal + 0.0) / 2)
    assert got["R@100"] == pytest.approx((1 / 2 + 0) / 2)
    assert got["RR@10"] == pytest.approx((1 / 2 + 0) / 2)


def test_a_query_missing_from_the_run_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert quality(qrels, {"q1": [("a", 1.0)]})["nDCG@10"] == pytest.approx(0.5)


def test_reciprocal_rank_fusion_sums_reciprocal_ranks():
    first = {"q": [("a", 9.0), ("b", 8.0), ("c", 7.0)]}
    second = {"q": [("c", 0.9), ("a", 0.8)]}
    fused = reciprocal_rank_fusion([first, second], k=10, constant=60)["q"]
    expected = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61}
    assert [doc for doc, _ in fused] == ["a", "c", "b"]
    assert {doc: score for doc, score in fused} == pytest.approx(expected)
    assert len(reciprocal_rank_fusion([first, second], k=2)["q"]) == 2


def test_trec_run_is_read_in_rank_order(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 d2 2 5.0 bm25\nq1 Q0 d1 1 6.5 bm25\nq2 Q0 d9 1 1.0 bm25\n\n")
    assert read_trec_run(path) == {"q1": [("d1", 6.5), ("d2", 5.0)], "q2": [("d9", 1.0)]}
    path.write_text("q1 d1 1\n")
    with pytest.raises(ValueError, match="TREC run line"):
        read_trec_run(path)


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from resrank_rag import backbones

    tokenizer = AutoTokenizer.from_pretrained(backbones.resolve(backbones.MINILM_ID))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=4096)
    return LlamaForCausalLM(config).eval(), tokenizer


def test_listwise_slides_windows_and_counts_tokens(tiny_lm):
    texts = [f"passage number {i} about topic {i % 3}" for i in range(25)]
    reranker = FulltextListwiseReranker(*tiny_lm, passage_tokens=4, window=10, stride=5)
    out = reranker.rerank("which topic", texts)
    assert sorted(out.scores) == [float(s) for s in range(1, 26)]  # a permutation: every passage ranked once
    # windows end at 25, 20, 15, 10 (the last one starts at 0): four forwards
    windows = [texts[15:25], texts[10:20], texts[5:15], texts[0:10]]
    expected = sum(len(reranker.window_ids("which topic", [reranker.truncate(t) for t in w])) for w in windows)
    assert out.lm_tokens == expected
    assert reranker.truncate("one two three four five six") == "one two three four"


def test_listwise_window_reorders_by_label_logits(tiny_lm):
    lm, tokenizer = tiny_lm
    reranker = FulltextListwiseReranker(lm, tokenizer, window=20, stride=10)
    texts = ["alpha", "beta", "gamma"]
    ids = reranker.window_ids("q", texts)
    logits = reranker.last_logits([ids])[0, reranker.label_ids[:3]]
    best = int(torch.argmax(logits))
    out = reranker.rerank("q", texts)
    assert out.scores[best] == max(out.scores)


def test_pointwise_scores_yes_minus_no_per_passage(tiny_lm):
    lm, tokenizer = tiny_lm
    reranker = PointwiseReranker(lm, tokenizer, passage_tokens=16, batch_size=2)
    texts = ["short", "a somewhat longer passage text", "mid size text"]
    out = reranker.rerank("query", texts)
    alone = [reranker.rerank("query", [t]).scores[0] for t in texts]  # padding must not change a score
    assert out.scores == pytest.approx(alone, abs=1e-4)
    assert len(set(np.round(out.scores, 6))) == 3
    assert out.lm_tokens > 3 * 5 and out.encoded_passages == 0


def test_unknown_reranker_name_is_a_clear_error():
    with pytest.raises(ValueError, match="choose from"):
        build_rerankers(["cross-encoder"], model=None)


def test_paired_test_identical_systems_and_a_clear_winner():
    from resrank_rag.evaluation.metrics import paired_test

    same = {f"q{i}": i / 10 for i in range(10)}
    assert paired_test(same, same)["p_ttest"] == 1.0 and paired_test(same, same)["p_randomisation"] == 1.0
    better = {q: v + 0.2 + 0.01 * (i % 3) for i, (q, v) in enumerate(same.items())}
    result = paired_test(better, same)
    assert result["mean_difference"] == pytest.approx(0.21, abs=0.01)
    assert result["wins"] == 10 and result["losses"] == 0
    assert result["p_ttest"] < 1e-6 and result["p_randomisation"] < 0.01  # 2 of 1024 sign flips are this extreme
    with pytest.raises(ValueError, match="two common queries"):
        paired_test({"a": 1.0}, {"a": 0.0})


def test_per_query_counts_a_missing_query_as_zero():
    from resrank_rag.evaluation.metrics import per_query

    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    values = per_query(qrels, {"q1": [("d1", 1.0), ("d3", 0.5)]})
    assert values == {"q1": pytest.approx(1.0), "q2": 0.0}


def test_set_mean_test_is_the_difference_of_dev_means_and_detects_a_real_gap():
    from resrank_rag.evaluation.metrics import set_mean_test

    rng = np.random.default_rng(0)
    a = {"big": {f"q{i}": 0.5 + 0.1 * rng.random() for i in range(200)}, "small": {f"s{i}": 0.4 for i in range(10)}}
    b = {"big": {q: v - 0.05 for q, v in a["big"].items()}, "small": {q: v + 0.02 for q, v in a["small"].items()}}
    result = set_mean_test(a, b)
    means = lambda runs: np.mean([np.mean(list(v.values())) for v in runs.values()])  # noqa: E731
    assert result["mean_difference"] == pytest.approx(means(a) - means(b))  # (0.05 - 0.02) / 2, not the pooled 0.047
    assert result["p_randomisation"] < 0.01
    same = set_mean_test(a, a)
    assert same["mean_difference"] == 0.0 and same["p_randomisation"] == 1.0
