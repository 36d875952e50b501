"""The demo's web API and page, through FastAPI's test client (tiny model, scripted generator)."""

import pytest

pytest.importorskip("fastapi", reason="the web demo needs the demo extra: pip install -e '.[demo]'")
from fastapi.testclient import TestClient

from demos.docqa.pipeline import DocQA, open_index
from demos.docqa.server import create_app
from resrank_rag.index import Document

CHUNKS = [
    Document("a", "The cafeteria opens at noon.", {"title": "Cafeteria"}),
    Document("b", "Visitors sign in at reception.", {"title": "Visitors"}),
    Document("c", "The library lends laptops for a week.", {"title": "Library"}),
]


class Echo:
    name = "echo"

    def generate(self, system, user):
        return "From the passages [1] and [2]." if "standalone" not in system else "When do visitors sign in?"


@pytest.fixture
def client(tiny):
    qa = DocQA(open_index(tiny, CHUNKS, "web", ":memory:"), Echo(), k=3, context_passages=2)
    return TestClient(create_app(qa, {"corpus": "test", "documents": 3, "note": "honest note"}))


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="question"' in page.text and "/api/ask" in page.text
    assert client.get("/api/info").json()["note"] == "honest note"


def test_document_qa_answer(client):
    data = client.post("/api/ask", json={"question": "When does the cafeteria open?"}).json()
    assert data["cited"] == [1, 2] and len(data["passages"]) == 2 and len(data["candidates"]) == 3
    assert {"retrieve", "rerank", "generate", "total"} <= set(data["timings_ms"])
    assert data["history"] == []


def test_chat_carries_the_history(client):
    first = client.post("/api/ask", json={"question": "Visitors?", "mode": "chat"}).json()
    assert [t["role"] for t in first["history"]] == ["user", "assistant"]
    second = client.post("/api/ask", json={"question": "when?", "mode": "chat", "history": first["history"]}).json()
    assert second["search_query"] == "When do visitors sign in?" and len(second["history"]) == 4


def test_bad_requests_are_rejected(client):
    assert client.post("/api/ask", json={"question": ""}).status_code == 422
    assert client.post("/api/ask", json={"question": "   "}).status_code == 422
    bad_turn = {"question": "x", "mode": "chat", "history": [{"role": "system", "content": "y"}]}
    assert client.post("/api/ask", json=bad_turn).status_code == 422


def test_a_busy_port_is_reported_before_serving():
    import socket

    from demos.docqa.server import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} .* busy; pass another one with --port"):
            serve(qa=None, info={}, port=port, open_browser=False)


# ---------------------------------------------------------------- extractive answer, late generation, feedback


@pytest.fixture
def users_qa(tiny, tmp_path):
    from resrank_rag.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    qa = DocQA(open_index(tiny, CHUNKS, "web", ":memory:"), Echo(), k=3, context_passages=2,
               users={"alice": ["staff"], "bob": ["staff"]}, feedback=store)
    return qa, TestClient(create_app(qa, {"corpus": "test", "note": ""}))


def test_the_answer_carries_its_extractive_sentences_inside_their_passages(client):
    data = client.post("/api/ask", json={"question": "When does the cafeteria open?"}).json()
    assert data["extractive"] and data["generated"] and "extract" in data["timings_ms"]
    for sentence in data["extractive"]:
        passage = data["passages"][sentence["passage"] - 1]
        assert passage["text"][sentence["start"] : sentence["end"]] == sentence["text"]
        assert sentence["chunk_id"] == passage["id"] and sentence["label"] == passage["label"]
    assert "passage_vectors" not in data and "asked" not in data


def test_generate_false_answers_at_once_and_api_generate_adds_the_generated_answer_once(users_qa):
    qa, client = users_qa
    found = client.post("/api/ask", json={"question": "When does the cafeteria open?", "user": "alice", "generate": False}).json()
    assert found["answer"] == "" and not found["generated"] and found["extractive"] and found["list_id"]
    assert {"retrieve", "rerank", "extract", "total"} == set(found["timings_ms"])
    assert client.post("/api/generate", json={"list_id": found["list_id"], "user": "bob"}).status_code == 404  # not bob's
    done = client.post("/api/generate", json={"list_id": found["list_id"], "user": "alice"}).json()
    assert done["generated"] and done["answer"] == "From the passages [1] and [2]." and done["cited"] == [1, 2]
    assert [p["id"] for p in done["passages"]] == [p["id"] for p in found["passages"]] and done["list_id"] == found["list_id"]
    assert list(done["timings_ms"]) == ["retrieve", "rerank", "extract", "generate", "cite", "total"]
    assert client.post("/api/generate", json={"list_id": found["list_id"], "user": "alice"}).status_code == 404  # once


def test_chat_with_late_generation_ends_its_history_with_the_generated_reply(users_qa):
    _, client = users_qa
    found = client.post("/api/ask", json={"question": "Visitors?", "mode": "chat", "generate": False}).json()
    assert found["history"][-1] == {"role": "assistant", "content": " ".join(s["text"] for s in found["extractive"])}
    done = client.post("/api/generate", json={"list_id": found["list_id"]}).json()
    assert done["history"] == [{"role": "user", "content": "Visitors?"}, {"role": "assistant", "content": done["answer"]}]


def test_a_thumbs_up_is_stored_for_that_user_and_chunk_and_read_back(users_qa):
    from resrank_rag.feedback import FeedbackStore, model_fingerprint

    qa, client = users_qa
    found = client.post("/api/ask", json={"question": "When does the cafeteria open?", "user": "alice", "generate": False}).json()
    chunk = found["passages"][1]["id"]
    rated = client.post("/api/feedback", json={"list_id": found["list_id"], "chunk_id": chunk, "label": 1, "user": "alice"})
    assert rated.status_code == 200 and rated.json()["labels"] == {chunk: 1}
    assert client.get("/api/feedback", params={"list_id": found["list_id"], "user": "alice"}).json()["labels"] == {chunk: 1}
    assert client.get("/api/feedback", params={"list_id": found["list_id"], "user": "bob"}).json()["labels"] == {}
    with FeedbackStore(qa.feedback.path) as store:  # another connection to the file: it is on disk
        [shown] = store.lists()
    assert (shown.user, shown.query, shown.ratings, shown.collection) == ("alice", found["search_query"], {chunk: 1}, qa.index.collection)
    assert [(s.chunk_id, s.position, s.first_stage_rank) for s in shown.shown] == [
        (p["id"], place, p["retrieval_rank"]) for place, p in enumerate(found["passages"], 1)]
    assert shown.model == model_fingerprint(qa.index.model) and shown.encoder == qa.index.model.encoder_fingerprint
    cleared = client.post("/api/feedback", json={"list_id": found["list_id"], "chunk_id": chunk, "label": 0, "user": "alice"})
    assert cleared.json()["labels"] == {} and qa.feedback.count() == 0


def test_nobody_rates_a_list_they_were_not_shown_or_a_chunk_it_did_not_hold(users_qa):
    qa, client = users_qa
    alice = client.post("/api/ask", json={"question": "Visitors?", "user": "alice", "generate": False}).json()
    anonymous = client.post("/api/ask", json={"question": "Visitors?", "generate": False}).json()
    chunk = alice["passages"][0]["id"]
    unshown = ({c["id"] for c in alice["candidates"]} - {p["id"] for p in alice["passages"]}).pop()  # in the table only
    for list_id, chunk_id, user in ((alice["list_id"], chunk, "bob"), (alice["list_id"], chunk, None),
                                    (anonymous["list_id"], chunk, "alice"), (alice["list_id"], unshown, "alice"),
                                    ("no-such-list", chunk, "alice"), (alice["list_id"], chunk, "mallory")):
        response = client.post("/api/feedback", json={"list_id": list_id, "chunk_id": chunk_id, "label": 1, "user": user})
        assert response.status_code == 403, (list_id, chunk_id, user)
    assert client.post("/api/feedback", json={"list_id": alice["list_id"], "chunk_id": chunk, "label": 2, "user": "alice"}).status_code == 422
    assert client.post("/api/ask", json={"question": "Visitors?", "user": "mallory"}).status_code == 403
    assert qa.feedback.count() == 0
    assert {s.user for s in qa.feedback.lists(rated_only=False)} == {"alice", "anonymous"}


def test_feedback_outlives_a_restart_and_a_corpus_rebuild(tiny, tmp_path, monkeypatch):
    from resrank_rag.feedback import FeedbackStore

    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path / "cache"))

    path, qdrant = tmp_path / "feedback.sqlite", str(tmp_path / "qdrant")
    index = open_index(tiny, CHUNKS, "web", qdrant)
    client = TestClient(create_app(DocQA(index, Echo(), k=3, context_passages=2, feedback=FeedbackStore(path)), {}))
    found = client.post("/api/ask", json={"question": "Visitors?", "generate": False}).json()
    chunk = found["passages"][0]["id"]
    client.post("/api/feedback", json={"list_id": found["list_id"], "chunk_id": chunk, "label": -1})
    index.client.close()
    edited = [*CHUNKS[:2], Document("c", "The library lends laptops for two weeks.", {"title": "Library"})]
    rebuilt = open_index(tiny, edited, "web", qdrant)  # a new collection; the old one is deleted
    assert rebuilt.collection != index.collection
    again = TestClient(create_app(DocQA(rebuilt, Echo(), k=3, context_passages=2, feedback=FeedbackStore(path)), {}))
    assert again.get("/api/feedback", params={"list_id": found["list_id"]}).json()["labels"] == {chunk: -1}
    rebuilt.client.close()


def test_without_a_generator_the_extractive_answer_is_the_answer(tiny):
    qa = DocQA(open_index(tiny, CHUNKS, "web", ":memory:"), None, k=3, context_passages=2)
    client = TestClient(create_app(qa, {"generate": False}))
    data = client.post("/api/ask", json={"question": "When does the cafeteria open?"}).json()
    assert not data["generated"] and data["extractive"] and data["generator"] == "" and "generate" not in data["timings_ms"]
    assert client.post("/api/generate", json={"list_id": data["list_id"]}).status_code == 400
    chat = client.post("/api/ask", json={"question": "visitors?", "mode": "chat", "history": [
        {"role": "user", "content": "cafeteria?"}, {"role": "assistant", "content": "noon"}]}).json()
    assert chat["search_query"] == "cafeteria? visitors?"  # condensed from the history: no generator to ask
