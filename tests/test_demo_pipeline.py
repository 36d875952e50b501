"""Document QA and chat over a ResRankIndex, with a tiny random ResRank and a scripted generator."""

import json

import pytest

from demos.docqa.chat import chat_turn, condense_with_history
from demos.docqa.pipeline import DocQA, collection_name, open_index
from resrank_rag.index import Document

TOPICS = {
    "trains": "Book a train for business trips shorter than 500 km.",
    "hotels": "Hotels are reimbursed up to 150 euros per night.",
    "laptops": "Laptops are replaced every four years by the IT desk.",
    "leave": "Employees have 25 days of paid leave per year.",
    "expenses": "Expense reports are due on the fifth of each month.",
    "parking": "Parking permits are issued by the facilities team.",
    "badges": "Lost badges are replaced at the front desk.",
    "meals": "Meals on business trips are reimbursed up to 40 euros a day.",
}
CHUNKS = [Document(key, text, {"title": key.capitalize()}) for key, text in TOPICS.items()]


class ScriptedGenerator:
    """Records what it is asked and answers with a fixed text."""

    name = "scripted"

    def __init__(self, reply="Trains for short trips [1], see also [3]."):
        self.reply = reply
        self.calls = []

    def generate(self, system, user):
        self.calls.append((system, user))
        return self.reply


@pytest.fixture
def qa(tiny):
    return DocQA(open_index(tiny, CHUNKS, "test", ":memory:"), ScriptedGenerator(), k=6, context_passages=3, first_stage="hybrid")


def test_answer_shows_both_orders_citations_and_stage_timings(qa):
    answer = qa.ask("How do I travel on a short business trip?")
    assert len(answer.candidates) == 6
    assert [c.retrieval_rank for c in answer.candidates] == list(range(1, 7))
    assert sorted(c.resrank_rank for c in answer.candidates) == list(range(1, 7))
    assert [p.resrank_rank for p in answer.passages] == [1, 2, 3]
    assert answer.cited == [1, 3] and answer.citations == "generator"
    _, user = qa.generator.calls[-1]
    assert user.index(f"[1] {answer.passages[0].text}") < user.index(f"[2] {answer.passages[1].text}")
    assert {"retrieve", "rerank", "generate", "cite", "total"} <= set(answer.timings_ms)
    stages = sum(ms for stage, ms in answer.timings_ms.items() if stage != "total")
    assert answer.timings_ms["total"] == pytest.approx(stages, abs=0.2)
    assert answer.to_dict()["passages"][0]["title"] == answer.passages[0].title


def test_untrained_resrank_keeps_the_dense_order(tiny):
    """Zero residual heads: ResRank reranks the dense top-k exactly as dense retrieval ranked it."""
    qa = DocQA(open_index(tiny, CHUNKS, "dense", ":memory:"), ScriptedGenerator(), k=8, first_stage="dense")
    for question in ("hotel costs", "lost badge", "paid leave days"):
        answer = qa.ask(question)
        assert [c.resrank_rank for c in answer.candidates] == [c.retrieval_rank for c in answer.candidates]


def test_page_says_what_the_checkpoint_adds_to_dense():
    import torch

    from demos.docqa.app import describe_ranking
    from resrank_rag.testing import perturb_heads, tiny_resrank

    model = tiny_resrank()
    untrained, note = describe_ranking(model)
    assert untrained and "untrained" in note
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.0315)
    untrained, note = describe_ranking(model)
    assert not untrained and "rank prior (0.032" in note and "adds nothing" in note
    model.config.extra["lm_branch"] = {"DL 2020": {"resrank": 0.6232, "resrank-nolm": 0.6232}}
    assert "DL 2020: resrank 0.623, resrank-nolm 0.623" in describe_ranking(model)[1]
    perturb_heads(model)
    assert describe_ranking(model) == (
        False, "The ResRank checkpoint runs its SmolLM2 branch (one position per passage, one forward). "
        "Measured nDCG@10: DL 2020: resrank 0.623, resrank-nolm 0.623.")
    model.config.extra.pop("lm_branch")
    assert describe_ranking(model)[1].endswith("one forward).")


def test_page_says_when_the_checkpoint_runs_no_lm():
    import torch

    from demos.docqa.app import describe_ranking
    from resrank_rag.testing import tiny_resrank

    model = tiny_resrank(linear_features=["rank", "cosine", "lexical"], lm_branch=False)
    assert describe_ranking(model)[0]  # zero weights, zero prior: dense cosine
    with torch.no_grad():
        model.linear_scorer.weight.fill_(0.01)
        model.rank_prior_weight.fill_(0.03)
    untrained, note = describe_ranking(model)
    assert not untrained and "runs no LM by default" in note and "lexical-match" in note and "resrank adapt" in note


def test_index_is_reused_when_the_corpus_is_unchanged(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path / "cache"))
    first = open_index(tiny, CHUNKS, "reuse", str(tmp_path / "qdrant"))
    assert first.embedding_cache.encoded_count == len(CHUNKS)
    first.client.close()
    again = open_index(tiny, CHUNKS, "reuse", str(tmp_path / "qdrant"))
    assert again.count() == len(CHUNKS) and again.embedding_cache.encoded_count == 0
    again.client.close()
    edited = [*CHUNKS[:-1], Document("meals", "Meals are reimbursed up to 45 euros a day.", {"title": "Meals"})]
    assert collection_name(edited, "reuse") != collection_name(CHUNKS, "reuse")
    changed = open_index(tiny, edited, "reuse", str(tmp_path / "qdrant"))
    assert changed.embedding_cache.encoded_count == 1  # only the edited chunk is encoded
    assert [c.name for c in changed.client.get_collections().collections] == [changed.collection]
    changed.client.close()


def test_empty_corpus_and_bad_settings_are_refused(tiny):
    with pytest.raises(ValueError, match="no documents"):
        open_index(tiny, [], "empty", ":memory:")
    with pytest.raises(ValueError, match="context_passages"):
        DocQA(open_index(tiny, CHUNKS, "bad", ":memory:"), ScriptedGenerator(), k=2, context_passages=3)


def test_history_condenser_keeps_recent_questions():
    history = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "What about hotels?"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "And meals?"},
        {"role": "assistant", "content": "c"},
    ]
    assert condense_with_history(history, "how much?") == "What about hotels? And meals? how much?"


def test_chat_condenses_the_follow_up_before_retrieval(qa):
    first = chat_turn(qa, [], "What is the hotel limit?", condense="history")
    assert first.search_query == "What is the hotel limit?" and "condense" not in first.timings_ms
    assert [t["role"] for t in first.history] == ["user", "assistant"]
    second = chat_turn(qa, first.history, "and for meals?", condense="history")
    assert second.question == "and for meals?"
    assert second.search_query == "What is the hotel limit? and for meals?"
    assert "condense" in second.timings_ms and len(second.history) == 4


def test_chat_uses_the_llm_rewrite_and_falls_back_on_an_unusable_one(qa):
    history = [{"role": "user", "content": "What is the hotel limit?"}, {"role": "assistant", "content": "150 euros [1]."}]
    qa.generator.reply = "What is the meal allowance on business trips?"
    answer = chat_turn(qa, history, "and meals?", condense="auto")
    assert answer.search_query == "What is the meal allowance on business trips?"
    condense_system, condense_user = qa.generator.calls[-2]
    assert "standalone" in condense_system and "150 euros [1]." in condense_user and "and meals?" in condense_user
    qa.generator.reply = ""
    assert chat_turn(qa, history, "and meals?", condense="llm").search_query == "What is the hotel limit? and meals?"


def test_chat_rejects_malformed_history(qa):
    with pytest.raises(ValueError, match="role"):
        chat_turn(qa, [{"role": "system", "content": "x"}], "hi")
    with pytest.raises(ValueError, match="condense"):
        chat_turn(qa, [], "hi", condense="magic")


def test_build_indexes_a_beir_corpus_and_the_terminal_mode_chats(tiny, tmp_path, monkeypatch, capsys):
    from demos.docqa.app import DemoSettings, build, run_terminal

    rows = [{"_id": key, "title": key.capitalize(), "text": text} for key, text in TOPICS.items()]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    settings = DemoSettings(data=tmp_path, limit=5, k=4, index_path=":memory:")
    qa, info = build(settings, model=tiny, generator=ScriptedGenerator("Hotels cost 150 euros [1]."))
    assert qa.view(None)["documents"] == 5 and info["corpus"] == f"BEIR {tmp_path.name}"
    assert "untrained" in info["model"] and "135M" not in info["note"]
    typed = iter(["What is the hotel limit?", "and meals?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    run_terminal(qa, chat=True)
    shown = capsys.readouterr().out
    assert "Hotels cost 150 euros [1]." in shown and "retrieval order vs ResRank order" in shown
    assert "searched for: Hotels cost 150 euros [1]." in shown  # the scripted LLM's "standalone" rewrite


def test_generation_can_come_later_or_not_at_all(qa):
    found = qa.ask("What is the hotel limit?", generate=False)
    assert not found.generated and found.answer == "" and found.extractive
    assert found.reply == " ".join(s.text for s in found.extractive)
    assert "generate" not in found.timings_ms and found.timings_ms["extract"] >= 0
    calls = len(qa.generator.calls)
    done = qa.complete(found)
    assert done.generated and done.answer == "Trains for short trips [1], see also [3]." and len(qa.generator.calls) == calls + 1
    assert qa.complete(done) is done and len(qa.generator.calls) == calls + 1  # generated once
    turn = chat_turn(qa, [], "What is the hotel limit?", generate=False)
    assert turn.history[-1]["content"] == turn.reply
    assert qa.complete(turn).history[-1] == {"role": "assistant", "content": turn.answer}


def test_the_extractive_answer_cites_a_context_passage(qa):
    answer = qa.ask("Hotels are reimbursed up to 150 euros per night.")
    best = answer.extractive[0]
    assert best.text == "Hotels are reimbursed up to 150 euros per night."  # a sentence of the corpus, asked verbatim
    assert answer.passages[best.passage - 1].id == best.chunk_id == "hotels"


def test_the_page_says_how_much_feedback_an_adapted_model_learned_from():
    from demos.docqa.app import describe_ranking
    from resrank_rag.testing import tiny_resrank

    model = tiny_resrank()
    plain = describe_ranking(model)[1]
    model.config.extra["adapt"] = {"heldout": 0.1, "feedback": {"events": 37, "lists": 12}}
    untrained, note = describe_ranking(model)
    assert note == plain + " It was adapted on 37 feedback events from 12 lists (`resrank adapt --feedback`)."
    model.config.extra["adapt"] = {"heldout": 0.1}  # adapted without feedback
    assert describe_ranking(model)[1] == plain


def test_build_without_generation_loads_no_generator_and_prints_the_extractive_answer_first(tiny, tmp_path, capsys):
    from demos.docqa.app import DemoSettings, build, print_answer

    rows = [{"_id": key, "title": key.capitalize(), "text": text} for key, text in TOPICS.items()]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    tiny.config.extra["adapt"] = {"feedback": {"events": 3, "lists": 2}}
    qa, info = build(DemoSettings(data=tmp_path, k=4, index_path=":memory:", generate=False), model=tiny)
    assert qa.generator is None and not info["generate"] and "--no-generate" in info["note"]
    assert "adapted on 3 feedback events from 2 lists" in info["note"]
    assert info["feedback_db"] == ":memory:"
    print_answer(qa.ask("Hotels are reimbursed up to 150 euros per night."))
    shown = capsys.readouterr()
    assert "adapted on 3 feedback events from 2 lists" in shown.err  # said in the terminal too
    assert "from the documents" in shown.out and "Generated answer" not in shown.out
    assert shown.out.index("Hotels are reimbursed up to 150 euros per night.") < shown.out.index("retrieval order")
    qa, _ = build(DemoSettings(data=tmp_path, k=4, index_path=":memory:"), model=tiny, generator=ScriptedGenerator())
    print_answer(qa.ask("Hotels are reimbursed up to 150 euros per night."))
    out = capsys.readouterr().out
    assert out.index("from the documents") < out.index("Generated answer") < out.index("retrieval order")


def test_feedback_lives_beside_the_index(tmp_path, monkeypatch):
    from demos.docqa.feedback import feedback_path

    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path))
    assert feedback_path(None, None) == tmp_path / "demo" / "feedback.sqlite"
    assert feedback_path(None, ":memory:") == ":memory:"
    assert feedback_path(tmp_path / "mine.sqlite", ":memory:") == tmp_path / "mine.sqlite"


def test_warming_encodes_every_answer_sentence_once_so_answers_encode_none(tiny):
    chunks = [Document(key, f"{text} Ask the office about {key}.", {"title": key}) for key, text in TOPICS.items()]
    qa = DocQA(open_index(tiny, chunks, "warm", ":memory:"), ScriptedGenerator(), k=4)
    cache = qa.index.embedding_cache
    assert qa.warm_extractive() == 2 * len(chunks)  # two sentences a chunk
    assert qa.warm_extractive() == 0
    before = cache.encoded_count
    answer = qa.ask("What is the hotel limit?", generate=False)
    assert answer.extractive and cache.encoded_count == before


def test_ratings_reorder_the_next_answer_through_the_feedback_memory(qa):
    from demos.docqa.pipeline import Stopwatch
    from resrank_rag.feedback import ShownItem

    query = "Hotels are reimbursed up to 150 euros per night."
    before, _ = qa.rank(query, Stopwatch())
    last = before[-1]
    list_id = qa.feedback.record_shown("anonymous", query, qa.index.collection,
                                       [ShownItem(c.id, c.resrank_rank, c.retrieval_rank) for c in before])
    qa.feedback.rate(list_id, "anonymous", last.id, 1)
    qa_memory = qa.memory()
    assert len(qa_memory) == 1
    after, _ = qa.rank(query, Stopwatch())
    moved = next(c for c in after if c.id == last.id)
    gap = before[-2].resrank_score - last.resrank_score
    assert moved.resrank_score == pytest.approx(last.resrank_score + 0.05, abs=1e-4)  # 0.05 x similarity 1
    assert moved.resrank_rank < last.resrank_rank or gap > 0.05
    qa.learn_from_feedback = False
    plain, _ = qa.rank(query, Stopwatch())
    assert [c.id for c in plain] == [c.id for c in before]


def test_the_memory_is_rebuilt_only_when_a_rating_changed_and_a_question_is_encoded_once(qa, monkeypatch):
    from demos.docqa.pipeline import Stopwatch
    from resrank_rag.feedback import ShownItem

    query = "Hotels are reimbursed up to 150 euros per night."
    shown, _ = qa.rank(query, Stopwatch())
    list_id = qa.feedback.record_shown("anonymous", query, qa.index.collection,
                                       [ShownItem(c.id, c.resrank_rank, c.retrieval_rank) for c in shown])
    qa.feedback.rate(list_id, "anonymous", shown[0].id, 1)
    memory = qa.memory()
    assert qa.memory() is memory
    qa.feedback.rate(list_id, "anonymous", shown[1].id, -1)
    assert qa.memory() is not memory and len(qa.memory()) == 1
    encoded = []
    original = qa.index.model.encode_queries
    monkeypatch.setattr(qa.index.model, "encode_queries", lambda texts, **kw: encoded.append(list(texts)) or original(texts, **kw))
    answer = qa.ask(query, generate=False)
    assert answer.extractive and encoded == [[query]]
