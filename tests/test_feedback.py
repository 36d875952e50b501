"""Users' 👍/👎: the SQLite store, feedback as adapt's training lists, the weighted loss, and the feedback memory."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from resrank_rag import ResRank
from resrank_rag.adapt import adapt
from resrank_rag.adapt.feedback import FeedbackWeights, feedback_queries, to_query
from resrank_rag.adapt.lists import StoredVectors, first_stage_lists
from resrank_rag.feedback import FeedbackError, FeedbackList, FeedbackStore, ShownItem, read_feedback, write_jsonl
from resrank_rag.feedback.memory import FeedbackMemory
from resrank_rag.index import ResRankIndex
from resrank_rag.training import losses
from resrank_rag.training.linear import FeatureList, fit_linear_scorer
from tests.test_adapt import DOCS, FAST, LORA, PRIOR, QUERIES, world  # noqa: F401 - the tiny collection fixture

pytestmark = pytest.mark.usefixtures("one_thread")


def shown(*ids):
    return [ShownItem(chunk_id, position, first_stage_rank=position) for position, chunk_id in enumerate(ids, 1)]


def test_store_keeps_ratings_per_user_and_only_on_shown_chunks(tmp_path):
    path = tmp_path / "feedback.sqlite"
    with FeedbackStore(path) as store:
        alice = store.record_shown("alice", "who approves travel?", "docs", shown("a#0", "b#0", "c#0"), model="m1", encoder="e1")
        bob = store.record_shown("bob", "leave policy", "docs", shown("d#0"))
        store.rate(alice, "alice", "b#0", 1)
        store.rate(alice, "alice", "a#0", -1)
        store.rate(alice, "alice", "a#0", 1)  # a second click replaces the label
        store.rate(alice, "alice", "c#0", 1)
        store.rate(alice, "alice", "c#0", 0)  # and 0 clears it
        with pytest.raises(FeedbackError, match="not shown"):
            store.rate(alice, "alice", "d#0", 1)  # a chunk of another list
        with pytest.raises(FeedbackError, match="no list"):
            store.rate(bob, "alice", "d#0", 1)  # another user's list
        with pytest.raises(FeedbackError, match="no list"):
            store.rate("made-up", "alice", "a#0", 1)
        with pytest.raises(ValueError, match="label"):
            store.rate(alice, "alice", "a#0", 2)
        assert store.ratings_of("alice", alice) == {"a#0": 1, "b#0": 1} and store.ratings_of("bob", alice) == {}
    with FeedbackStore(path) as store:  # survives a restart
        (item,) = store.lists()
        assert len(store.lists(rated_only=False)) == 2 and store.count() == 2
    assert (item.user, item.query, item.collection, item.model, item.encoder) == ("alice", "who approves travel?", "docs", "m1", "e1")
    assert [s.chunk_id for s in item.shown] == ["a#0", "b#0", "c#0"] and item.ratings == {"a#0": 1, "b#0": 1}
    exported = tmp_path / "feedback.jsonl"
    assert FeedbackStore(path).export_jsonl(exported) == 1
    assert read_feedback(exported) == read_feedback(path) == [item]


def test_feedback_files_with_mistakes_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="feedback.sqlite"):
        read_feedback(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "shown": [{"chunk_id": "a", "position": 1, "first_stage_rank": 1}],
                               "ratings": {"z": 1}}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1.*shown list"):
        read_feedback(bad)
    bad.write_text(json.dumps({"query": "q", "ratings": {"a": 1}}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: a feedback row needs"):
        read_feedback(bad)


def test_a_rated_list_becomes_positives_and_weighted_negatives():
    item = FeedbackList("l1", "alice", "q", "docs", shown("a", "b", "c", "d", "e"), {"d": 1, "b": -1, "gone": 1})
    item.shown.append(ShownItem("gone", 6, 9))
    weights = FeedbackWeights(disliked=1.0, skipped=0.5, unrated=0.1)
    query, dropped = to_query(item, {"a", "b", "c", "d", "e"}, weights)
    assert dropped == 1 and query.relevant == {"d": 1}
    assert query.negatives == {"a": 0.5, "b": 1.0, "c": 0.5}  # shown above the 👍 and skipped, or 👎
    assert query.unlabelled_weight == 0.1
    assert to_query(FeedbackList("l2", "u", "q", "docs", shown("a"), {"a": -1}), None, weights) == (None, 0)
    with pytest.raises(ValueError, match="skipped"):
        FeedbackWeights(skipped=1.5)


def test_weighted_ranknet_weighs_each_pair_by_its_negative():
    scores, labels = torch.tensor([0.2, 0.5, 0.1]), torch.tensor([1, 0, 0])
    plain = losses.ranknet(scores, labels, 1.0)
    assert losses.ranknet(scores, labels, 1.0, torch.ones(3)) == pytest.approx(plain.item())
    only_first = losses.ranknet(scores, labels, 1.0, torch.tensor([1.0, 1.0, 0.0]))
    assert only_first.item() == pytest.approx(torch.nn.functional.softplus(torch.tensor(0.3)).item())
    weighted = losses.ranknet(scores, labels, 1.0, torch.tensor([1.0, 0.75, 0.25]))
    pair = torch.nn.functional.softplus(-(scores[0] - scores[1:]))
    assert weighted.item() == pytest.approx(((pair * torch.tensor([0.75, 0.25])).sum() / 1.0).item())
    assert losses.ranknet(scores, labels, 1.0, torch.tensor([1.0, 0.0, 0.0])).item() == 0.0


def test_the_linear_scorer_ignores_negatives_of_weight_zero():
    from resrank_rag.testing import tiny_resrank

    model = tiny_resrank(linear_features=["rank"], lm_branch=False)
    row = FeatureList(torch.zeros(3), torch.tensor([[1.0], [0.0], [5.0]]), torch.zeros(3, 1),
                      torch.tensor([1, 0, 0]), item_weights=torch.tensor([1.0, 1.0, 0.0]))
    fit_linear_scorer(model, [row], steps=50, lr=0.1)
    assert float(model.linear_scorer.weight[0, 0]) > 0  # only the pair (0, 1) counts: the feature helps it
    fit_linear_scorer(model, [FeatureList(row.base, row.with_texts, row.vectors_only, row.labels)], steps=50, lr=0.1)
    assert float(model.linear_scorer.weight[0, 0]) < 0  # with candidate 2 a full negative, it hurts


def test_memory_boosts_what_similar_past_queries_liked():
    past = np.eye(3, dtype=np.float32)
    memory = FeedbackMemory(past, [{"a": 1, "b": -1}, {"c": 1}, {"a": -1}], neighbours=2, min_similarity=0.5, strength=0.1)
    query = np.array([0.8, 0.6, 0.0], dtype=np.float32)  # like past query 0 (0.8), less like 1 (0.6), not 2
    np.testing.assert_allclose(memory.adjust(query, ["a", "b", "c", "x"]), [0.08, -0.08, 0.06, 0.0], atol=1e-6)
    np.testing.assert_allclose(memory.rerank(query, ["b", "a"], [1.0, 1.0]), [0.92, 1.08], atol=1e-6)
    far = FeedbackMemory(past, [{"a": 1}] * 3, min_similarity=0.9)
    assert not far.adjust(query, ["a"]).any()  # no past query is similar enough
    with pytest.raises(ValueError, match="rated lists"):
        FeedbackMemory(past, [{}])


def simulated_feedback(path, rows, extra_gone: bool = True):
    """A store where a user saw each query's passage below two others and rated it 👍 (and one 👎)."""
    with FeedbackStore(path) as store:
        for n, row in enumerate(rows):
            relevant = row["relevant"][0]
            others = [d.id for d in DOCS if d.id != relevant][n % 5 : n % 5 + 2]
            items = [*others, relevant] + (["deleted-chunk"] if extra_gone and n == 0 else [])
            list_id = store.record_shown("sim", row["query"], "docs", shown(*items))
            store.rate(list_id, "sim", relevant, 1)
            store.rate(list_id, "sim", others[0], -1)
            if extra_gone and n == 0:
                store.rate(list_id, "sim", "deleted-chunk", 1)
    return path


def test_adapt_learns_from_feedback_and_records_it(world, tmp_path):  # noqa: F811
    feedback = simulated_feedback(tmp_path / "feedback.sqlite", QUERIES)
    with ResRankIndex(ResRank.from_pretrained(world["base"], precision="fp32"), "docs", path=world["path"]) as index:
        rated = feedback_queries(feedback, index)
        assert (rated.lists, rated.events, rated.dropped_events, len(rated.queries)) == (30, 61, 1, 30)
        lists = first_stage_lists(index, index.model, rated.queries[:3], 8, "dense", StoredVectors())
    training = lists[0].training_list(8)
    by_id = dict(zip(training.doc_ids, training.weights))
    assert by_id[QUERIES[0]["relevant"][0]] == 1.0 and set(by_id.values()) <= {1.0, 0.5, 0.25}
    out = tmp_path / "out"
    result = adapt("docs", out=out, feedback=feedback, base=world["base"], path=world["path"], stages=[PRIOR, LORA], **FAST)
    assert result.adapted and result.data["feedback"]["events"] == 61 and result.data["feedback"]["dropped_events"] == 1
    recorded = ResRank.from_pretrained(out, precision="fp32", warm_start=False).config.extra["adapt"]["feedback"]
    assert recorded["lists"] == 30 and recorded["events"] == 61 and recorded["weights"]["skipped"] == 0.5
    both = adapt("docs", world["queries"], out=tmp_path / "both", feedback=feedback, base=world["base"], path=world["path"],
                 stages=[PRIOR, LORA], **FAST)  # the same questions twice: merged, not duplicated
    assert both.data["train_queries"] + both.data["heldout_queries"] == 30


def test_adapt_refuses_feedback_without_enough_liked_lists(world, tmp_path):  # noqa: F811
    feedback = simulated_feedback(tmp_path / "few.sqlite", QUERIES[:5], extra_gone=False)
    with pytest.raises(ValueError, match="lists with a 👍"):
        adapt("docs", out=tmp_path / "out", feedback=feedback, base=world["base"], path=world["path"], **FAST)
    empty = tmp_path / "empty.jsonl"
    write_jsonl(empty, [])
    with pytest.raises(ValueError, match="no rated lists"):
        adapt("docs", out=tmp_path / "out", feedback=empty, base=world["base"], path=world["path"], **FAST)


def test_cli_takes_a_feedback_file(world, tmp_path):  # noqa: F811
    from resrank_rag.cli import app

    feedback = simulated_feedback(tmp_path / "feedback.sqlite", QUERIES)
    result = CliRunner().invoke(app, ["adapt", "--collection", "docs", "--path", world["path"], "--feedback", str(feedback),
                                      "--out", str(tmp_path / "out"), "--base", world["base"], "--prior-steps", "6",
                                      "--steps", "2", "--depth", "12", "--list-size", "8", "--eval-every", "4"])
    assert result.exit_code == 0, result.output
    assert "feedback: 61 events on 30 lists (1 dropped" in result.output
    missing = CliRunner().invoke(app, ["adapt", "--collection", "docs", "--path", world["path"], "--out", str(tmp_path / "o")])
    assert missing.exit_code != 0 and "--feedback FILE" in missing.output


def test_label_free_pseudo_queries_come_only_from_chunks_users_were_shown_first(world, tmp_path):  # noqa: F811
    from resrank_rag.adapt.synthetic import pseudo_queries, shown_chunks

    log = tmp_path / "log.sqlite"
    with FeedbackStore(log) as store:  # questions asked, nothing rated
        for n in range(24):
            store.record_shown("u", f"question {n}", "docs", shown(f"d{n % 20}", f"d{20 + n % 3}", "d39", "d38"))
    top = shown_chunks(log)  # positions 1-3 only: d38 (4th every time) never; the most often shown first
    assert set(top) == {f"d{i}" for i in range(23)} | {"d39"} and top[0] == "d39" and set(top[1:4]) == {"d20", "d21", "d22"}
    model = ResRank.from_pretrained(world["base"], precision="fp32")
    with ResRankIndex(model, "docs", path=world["path"]) as index:
        made = pseudo_queries(index, 40, ("sentence", "keyphrases"), chunk_ids=top)
        assert len(made) == len(top) and {i for q in made for i in q.relevant} == set(top)
        with pytest.raises(ValueError, match="another collection"):
            pseudo_queries(index, 5, chunk_ids=["not-a-chunk"])
    result = adapt("docs", out=tmp_path / "out", synthetic_from=log, synthetic_kinds=("sentence", "keyphrases"),
                   base=world["base"], path=world["path"], stages=[PRIOR], **FAST)
    assert result.data["synthetic_from"] == {"file": str(log), "chunks": 24} and result.data["synthetic"]
    with pytest.raises(ValueError, match="no shown lists"):
        write_jsonl(tmp_path / "empty.jsonl", [])
        shown_chunks(tmp_path / "empty.jsonl")


def test_ratings_version_changes_with_every_rating_change_and_only_then():
    with FeedbackStore(":memory:") as store:
        first = store.record_shown("alice", "who approves travel?", "docs", shown("a#0", "b#0"))
        versions = [store.ratings_version()]
        store.record_shown("alice", "leave policy", "docs", shown("c#0"))  # a shown list is no rating
        assert store.ratings_version() == versions[-1]
        for chunk, label in [("a#0", 1), ("a#0", -1), ("b#0", -1), ("a#0", 0)]:  # add, flip, add, clear
            store.rate(first, "alice", chunk, label)
            versions.append(store.ratings_version())
        assert len(set(versions)) == len(versions)
