"""The no-LM feature scorer: a checkpoint option (``linear_features``, ``lm_branch``), loaded without the
LM backbone, fitted by ``resrank fit-features``' core, and the ``run:<name>`` list source it trains on."""

import json
import random

import numpy as np
import pytest
import torch

from resrank_rag import ResRank
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.rerankers import build_rerankers
from resrank_rag.features import candidate_features
from resrank_rag.testing import perturb_heads, tiny_resrank
from resrank_rag.training.config import DatasetSpec
from resrank_rag.training.data import ListBuilder, TrainingList
from resrank_rag.training.linear import add_linear_scorer, feature_lists, fit_linear_scorer

KINDS = ["rank", "cosine", "lexical"]
QUERY = "which planet has rings"
TEXTS = [
    "Bananas are rich in potassium.",
    "Jupiter is the largest planet.",
    "Saturn has a bright ring system made of ice; the planet's rings are wide.",
    "Paris is the capital of France.",
]


def by_hand(model, query, texts, vectors, row, ordered=True):
    """cosine - w_rank ln(rank) + features @ w[row], computed outside the model."""
    cosine = vectors @ model.encode_query(query)
    features = candidate_features(KINDS, cosine, query, texts)
    if not ordered:
        features[:, 0] = 0.0
    prior = float(model.rank_prior_weight.detach()) * np.log(np.arange(1, len(cosine) + 1)) if ordered else 0.0
    return cosine - prior + features @ model.linear_scorer.weight[row].detach().numpy()


def scores(results, n):
    out = np.zeros(n, np.float32)
    for r in results:
        out[r.index] = r.score
    return out


@pytest.fixture
def feature_model():
    model = tiny_resrank(linear_features=KINDS, lm_branch=False)
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.03)
        model.linear_scorer.weight.copy_(torch.linspace(-0.2, 0.3, model.linear_scorer.weight.numel()).view(2, -1))
    return model


def test_no_lm_path_is_cosine_prior_and_the_linear_term(feature_model):
    vectors = feature_model.encode(TEXTS)
    with_texts = scores(feature_model.rerank(QUERY, TEXTS, vectors=vectors), 4)
    np.testing.assert_allclose(with_texts, by_hand(feature_model, QUERY, TEXTS, vectors, 0), atol=1e-5)
    vectors_only = scores(feature_model.rerank(QUERY, vectors=vectors), 4)
    np.testing.assert_allclose(vectors_only, by_hand(feature_model, QUERY, None, vectors, 1), atol=1e-5)
    unordered = scores(feature_model.rerank(QUERY, TEXTS, vectors=vectors, ordered=False), 4)
    np.testing.assert_allclose(unordered, by_hand(feature_model, QUERY, TEXTS, vectors, 0, ordered=False), atol=1e-5)
    assert feature_model.reranker_input_length(QUERY, 4) == 0


def test_no_lm_path_never_runs_the_lm(feature_model, monkeypatch):
    monkeypatch.setattr(feature_model.reranker, "forward", lambda *a, **k: pytest.fail("the LM ran"))
    assert len(feature_model.rerank(QUERY, TEXTS)) == 4


def test_a_feature_checkpoint_loads_without_its_lm_and_saves_it_back(feature_model, tmp_path):
    perturb_heads(feature_model)  # LM-branch heads that must survive a round trip through a no-LM load
    feature_model.save_pretrained(tmp_path / "a")
    loaded = ResRank.from_pretrained(tmp_path / "a", precision="fp32", warm_start=False)
    assert loaded.reranker is None and not loaded.runs_lm
    assert not hasattr(loaded, "passage_head")
    vectors = feature_model.encode(TEXTS)
    np.testing.assert_allclose(scores(loaded.rerank(QUERY, TEXTS, vectors=vectors), 4),
                               scores(feature_model.rerank(QUERY, TEXTS, vectors=vectors), 4), atol=1e-6)
    loaded.save_pretrained(tmp_path / "b")  # no LM loaded: its heads and weights go along unchanged
    with_lm = ResRank.from_pretrained(tmp_path / "b", precision="fp32", warm_start=False, lm=True)
    assert with_lm.runs_lm
    for key, value in feature_model.heads_state_dict().items():
        torch.testing.assert_close(with_lm.heads_state_dict()[key], value)
    lm_scores = with_lm.score_lists([QUERY], [torch.from_numpy(vectors)], texts=[TEXTS])[0].detach().numpy()
    feature_model.config.lm_branch = True
    np.testing.assert_allclose(lm_scores, scores(feature_model.rerank(QUERY, TEXTS, vectors=vectors), 4), atol=1e-5)


def test_with_zero_residual_heads_the_lm_path_equals_the_feature_path(feature_model):
    vectors = feature_model.encode(TEXTS)
    feature_model.config.lm_branch = True  # the LM is loaded (tiny), its residual heads are zero
    lm = scores(feature_model.rerank(QUERY, TEXTS, vectors=vectors), 4)
    feature_model.config.lm_branch = False
    np.testing.assert_allclose(lm, scores(feature_model.rerank(QUERY, TEXTS, vectors=vectors), 4), atol=1e-5)


def test_score_lists_refuses_without_the_lm(feature_model, tmp_path):
    feature_model.save_pretrained(tmp_path)
    loaded = ResRank.from_pretrained(tmp_path, precision="fp32", warm_start=False)
    with pytest.raises(RuntimeError, match="lm=True"):
        loaded.score_lists([QUERY], [torch.from_numpy(loaded.encode(TEXTS))])
    with pytest.raises(TypeError, match="lm must be"):
        ResRank.from_pretrained(tmp_path, lm="no")


def synthetic_lists(seed=0, count=60):
    """Lists where the relevant passage shares the query's words but sits low in first-stage order."""
    rng = random.Random(seed)
    words = ["saturn", "ring", "ice", "orbit", "comet", "moon", "crater", "dust", "storm", "planet"]
    lists = []
    for i in range(count):
        topic = rng.sample(words, 2)
        others = [w for w in words if w not in topic]
        texts = [" ".join(rng.sample(others, 3)) + f" filler {j}" for j in range(9)]
        position = rng.randrange(3, 9)
        texts.insert(position, f"{topic[0]} {topic[1]} facts")
        labels = [0] * 10
        labels[position] = 1
        lists.append(TrainingList("synthetic", str(i), f"{topic[0]} {topic[1]}", [str(j) for j in range(10)], texts, labels))
    return lists


def test_fitting_learns_the_lexical_signal_and_starts_from_the_prior():
    model = tiny_resrank()
    add_linear_scorer(model, KINDS)
    lists = synthetic_lists()
    rows = feature_lists(model, lists, model.encode, progress=False)
    assert len(rows) == len(lists)
    before = model.scores_without_lm(torch.from_numpy(model.encode_queries([lists[0].query])),
                                     [torch.from_numpy(model.encode(lists[0].texts))])[0]
    curve = fit_linear_scorer(model, rows, steps=150, lr=0.05)
    assert curve[-1] < 0.5 * curve[0]
    np.testing.assert_allclose(before.detach().numpy(), (model.encode(lists[0].texts) @ model.encode_query(lists[0].query)), atol=1e-5)
    held = synthetic_lists(seed=1, count=20)
    top = [int(np.argmax(scores(model.rerank(item.query, item.texts), 10))) == item.labels.index(1) for item in held]
    assert np.mean(top) > 0.8  # the relevant passage (query words, ranked 4-10th) now comes first


def test_eval_builds_features_and_prior_rerankers(feature_model):
    names = [r.name for r in build_rerankers(["resrank", "resrank-nolm", "features", "prior"], feature_model)]
    assert names == ["resrank", "resrank-nolm", "features", "prior"]
    feature, prior = build_rerankers(["features", "prior"], feature_model)
    vectors = feature_model.encode(TEXTS)
    np.testing.assert_allclose(feature.rerank(QUERY, TEXTS, vectors).scores, by_hand(feature_model, QUERY, TEXTS, vectors, 0), atol=1e-5)
    cosine = vectors @ feature_model.encode_query(QUERY)
    np.testing.assert_allclose(prior.rerank(QUERY, TEXTS, vectors).scores, cosine - 0.03 * np.log(np.arange(1, 5)), atol=1e-5)


def test_named_run_lists_follow_that_runs_order(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"passage {i}"}) + "\n" for i in range(5)))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "question"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\td3\t2\n")
    (tmp_path / "runs" / "splade.test.trec").write_text("".join(f"q Q0 d{d} {r} {10 - r} s\n" for r, d in enumerate([3, 1, 4, 0], 1)))
    dataset = load_beir(tmp_path, "test")
    spec = DatasetSpec(path=str(tmp_path), split="test", negatives=["run:splade"], list_order="first_stage")
    built = ListBuilder(dataset, spec, list_size=3).build("q", random.Random(0))
    assert built.doc_ids == ["d3", "d1", "d4"] and built.labels == [2, 0, 0]
    with pytest.raises(FileNotFoundError, match="runs/rm3.test.trec"):
        ListBuilder(dataset, DatasetSpec(path=str(tmp_path), split="test", negatives=["run:rm3"], list_order="first_stage"), 3)
    with pytest.raises(ValueError, match="unknown negative sources"):
        DatasetSpec(path="x", negatives=["run:"])


def test_an_adapt_folder_loads_as_its_model(feature_model, tmp_path):
    feature_model.save_pretrained(tmp_path / "adapted" / "model")
    (tmp_path / "adapted" / "run").mkdir()
    assert ResRank.from_pretrained(tmp_path / "adapted", precision="fp32", warm_start=False).linear_scorer is not None
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "run").mkdir()
    (tmp_path / "kept" / "report.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="did not beat its base"):
        ResRank.from_pretrained(tmp_path / "kept")


def test_an_lm_checkpoint_is_compared_with_the_packaged_feature_scorer(feature_model):
    from resrank_rag.evaluation.rerankers import feature_scorer

    assert feature_scorer(feature_model) is feature_model  # a no-LM feature checkpoint is its own
    feature_model.config.lm_branch = True
    with pytest.raises(ValueError, match="encoder differs"):  # the packaged one's vectors would not match the tiny encoder's
        feature_scorer(feature_model)
