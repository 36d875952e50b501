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
