"""`resrank serve` under bad input, wrong keys, overload and disconnecting clients: clear 4xx/503, no crash."""

import asyncio
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install -e '.[serve]'")
from resrank_rag.serve import ServeSettings, create_app
from resrank_rag.serve.server import serving_in_thread
from resrank_rag.testing import tiny_resrank

DOCS = ["Paris is in France.", "Bananas are yellow.", "Berlin is in Germany."]


@pytest.fixture(scope="module")
def model():
    return tiny_resrank()


@pytest.fixture(scope="module")
def url(model):
    settings = ServeSettings(max_candidates=5, max_chars=500, max_body_mb=0.05)
    with serving_in_thread(create_app(model, settings)) as base:
        yield base


def slowed(model, seconds):
    """The same model, its rerank_batch delayed, to hold a forward open."""
    original = model.rerank_batch

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    model.rerank_batch = slow
    return model


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/rerank", {"query": "  ", "texts": DOCS}, "query is empty"),
        ("/rerank", {"query": "q", "texts": ["ok", 3]}, "texts.1"),
        ("/rerank", {"query": "q", "texts": []}, "texts is empty"),
        ("/rerank", {"query": "q"}, "send the candidates"),
        ("/rerank", {"query": "q", "texts": DOCS, "vectors": [[0.1] * 7] * 3}, "vectors[0] has 7 numbers"),
        ("/rerank", {"query": "q", "texts": DOCS, "vectors": [[0.1] * 32] * 2}, "got 3 texts but 2 vectors"),
        ("/rerank", {"query": "q", "texts": DOCS, "query_vector": [0.1] * 3}, "query_vector has 3 numbers"),
        ("/v2/rerank", {"query": "q", "documents": [{"text": "not a string"}]}, "documents.0"),
        ("/v2/rerank", {"documents": DOCS}, "query"),
        ("/v2/rerank", {"query": "q", "documents": DOCS, "top_n": 0}, "top_n"),
        ("/embed", {"inputs": []}, "inputs is empty"),
        ("/embed", {"inputs": "x", "prompt_name": "poem"}, "prompt_name"),
        ("/v1/embeddings", {"input": [[101, 102]]}, "token ids"),
        ("/v1/embeddings", {"input": "x", "dimensions": 12}, "dimensions"),
    ],
)
def test_bad_bodies_get_a_clear_422(url, path, body, needle):
    response = httpx.post(url + path, json=body)
    assert response.status_code == 422, response.text
    assert needle in response.text


def test_error_bodies_follow_each_api(url):
    tei = httpx.post(url + "/rerank", json={"query": " ", "texts": DOCS}).json()
    assert tei["error_type"] == "Validation" and "query is empty" in tei["error"]
    cohere = httpx.post(url + "/v2/rerank", json={"query": " ", "documents": DOCS}).json()
    assert set(cohere) == {"message"}
    openai = httpx.post(url + "/v1/embeddings", json={"input": []}).json()
    assert openai["error"]["type"] == "invalid_request_error" and "empty" in openai["error"]["message"]


def test_malformed_json_and_unknown_routes(url):
    bad = httpx.post(url + "/v2/rerank", content=b'{"query": ', headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["message"]
    not_object = httpx.post(url + "/rerank", json=["a list"])
    assert not_object.status_code == 422 and "JSON object" in not_object.json()["error"]
    missing = httpx.post(url + "/nowhere", json={})
    assert missing.status_code == 404 and missing.json()["error_type"] == "NotFound"


def test_per_request_limits(url):
    many = httpx.post(url + "/rerank", json={"query": "q", "texts": ["x"] * 6})
    assert many.status_code == 413 and "more than the 5" in many.json()["error"]
    long = httpx.post(url + "/rerank", json={"query": "q", "texts": ["x" * 300, "y" * 300]})
    assert long.status_code == 413 and "characters" in long.json()["error"]
    huge = httpx.post(url + "/embed", json={"inputs": ["z" * 70_000]})
    assert huge.status_code == 413 and "MiB" in huge.json()["error"]


def test_a_chunked_body_over_the_limit_is_refused(url):
    def chunks():
        yield b'{"inputs": ["'
        for _ in range(20):
            yield b"z" * 4096
        yield b'"]}'

    response = httpx.post(url + "/embed", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert httpx.get(url + "/health").status_code == 200


def test_stored_vectors_skip_the_encoder(model, url, monkeypatch):
    vectors = model.encode(DOCS)
    query_vector = model.encode_queries(["where is paris"])[0]
    want = [r.index for r in model.rerank("where is paris", DOCS, vectors=vectors, query_vector=query_vector)]

    def refuse(texts, *args, **kwargs):
        if len(texts):
            raise AssertionError(f"the encoder ran on {texts} although vectors were sent")
        return original(texts)

    original = model.encode

    monkeypatch.setattr(model, "encode", refuse)
    monkeypatch.setattr(model, "encode_queries", refuse)
    body = {"query": "where is paris", "vectors": vectors.tolist(), "query_vector": query_vector.tolist()}
    response = httpx.post(url + "/rerank", json=body)
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()] == want and "text" not in response.json()[0]


def test_api_key():
    openai = pytest.importorskip("openai")
    cohere = pytest.importorskip("cohere")
    with serving_in_thread(create_app(tiny_resrank(), ServeSettings(api_key="s3cret"))) as base:
        assert httpx.get(base + "/health").status_code == 200  # load balancers probe without a key
        refused = httpx.post(base + "/rerank", json={"query": "q", "texts": DOCS})
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
        assert httpx.get(base + "/metrics").status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(base + "/rerank", json={"query": "q", "texts": DOCS}, headers=good).status_code == 200
        with pytest.raises(cohere.UnauthorizedError):
            cohere.ClientV2(api_key="wrong", base_url=base, max_retries=0).rerank(model="m", query="q", documents=DOCS)
        assert len(cohere.ClientV2(api_key="s3cret", base_url=base).rerank(model="m", query="q", documents=DOCS).results) == 3
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).embeddings.create(model="m", input="x")


def test_a_full_queue_answers_503_with_retry_after():
    settings = ServeSettings(max_batch=1, max_queue=1)
    with serving_in_thread(create_app(slowed(tiny_resrank(), 0.4), settings)) as base:

        async def burst():
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                return await asyncio.gather(*(http.post("/v2/rerank", json={"query": f"q{i}", "documents": DOCS})
                                              for i in range(6)))

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["message"]
        assert httpx.post(base + "/v2/rerank", json={"query": "again", "documents": DOCS}).status_code == 200
        assert "resrank_rejected_total" in httpx.get(base + "/metrics").text


def test_a_client_that_disconnects_mid_batch_does_not_disturb_the_others():
    model = tiny_resrank()
    want = {q: [r.index for r in model.rerank(q, DOCS)] for q in ("first", "second", "third")}
    with serving_in_thread(create_app(slowed(model, 0.5), ServeSettings(max_batch=8))) as base:
        host, port = base.removeprefix("http://").split(":")
        results = {}

        def call(query):
            results[query] = httpx.post(base + "/rerank", json={"query": query, "texts": DOCS}, timeout=60)

        threads = [threading.Thread(target=call, args=(q,)) for q in ("first", "second")]
        for thread in threads:
            thread.start()
        body = b'{"query": "leaver", "texts": ["a", "b"]}'
        with socket.create_connection((host, int(port))) as leaver:  # sends a request, then hangs up
            leaver.sendall(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.2)
        call("third")
        for thread in threads:
            thread.join()
        for query, response in results.items():
            assert response.status_code == 200
            assert [r["index"] for r in response.json()] == want[query]
        assert httpx.get(base + "/health").json() == {"status": "ok"}
        assert "resrank_client_disconnects_total 1.0" in httpx.get(base + "/metrics").text


# ---------------------------------------------------------------- issue 26: strict bodies, token windows, parse cost


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v2/rerank", {"query": "q", "documents": DOCS, "top_n": True}, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": DOCS, "top_n": "1"}, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": DOCS, "return_documents": "yes"}, "return_documents"),
        ("/v2/rerank", {"query": "q", "documents": DOCS, "max_tokens_per_doc": "5"}, "max_tokens_per_doc"),
        ("/v2/rerank", {"query": "q", "documents": DOCS, "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ("/rerank", {"query": "q", "texts": DOCS, "vectors": [["0.1"] * 32] * 3}, "vectors.0.0"),
        ("/rerank", {"query": "q", "texts": DOCS, "query_vector": [True] * 32}, "query_vector.0"),
        ("/rerank", {"query": "q", "texts": DOCS, "return_text": "yes"}, "return_text"),
        ("/rerank", {"query": "q", "texts": DOCS, "truncate": "false"}, "truncate"),
        ("/rerank", {"query": "q", "texts": DOCS, "truncation_direction": "Left"}, "truncation_direction"),
        ("/embed", {"inputs": "x", "dimensions": "32"}, "dimensions"),
        ("/v1/embeddings", {"input": "x", "dimensions": 32.0}, "dimensions"),
    ],
)
def test_loose_types_are_refused_not_coerced(url, path, body, needle):
    """Issue 26 (14): top_n true or "1", return_documents "yes" and string vectors were accepted."""
    response = httpx.post(url + path, json=body)
    assert response.status_code == 422, response.text
    assert needle in response.text


@pytest.fixture(scope="module")
def roomy(model):
    """A server with the default text limits, so texts can outgrow the tiny encoder's 64-token window."""
    with serving_in_thread(create_app(model, ServeSettings())) as base:
        yield base


def test_tei_truncate_false_refuses_a_text_the_window_would_cut(roomy):
    """Issue 26 (14): TEI `truncate: false` with 5,000 words still truncated, silently."""
    long = " ".join(["word"] * 5000)
    for path, body in (("/rerank", {"query": "q", "texts": ["short", long]}), ("/embed", {"inputs": ["short", long]})):
        refused = httpx.post(roomy + path, json={**body, "truncate": False})
        assert refused.status_code == 413, refused.text
        assert refused.json()["error_type"] == "Validation" and "must have less than 65 tokens" in refused.json()["error"]
        assert "[1]" in refused.json()["error"]
        for truncate in (True, None):  # TEI's auto-truncate
            assert httpx.post(roomy + path, json={**body, "truncate": truncate}).status_code == 200
    long_query = httpx.post(roomy + "/rerank", json={"query": long, "texts": ["a"], "truncate": False})
    assert long_query.status_code == 413 and "`query`" in long_query.json()["error"]


def test_cohere_max_tokens_per_doc_cuts_each_document(roomy, model):
    """Issue 26 (14): Cohere's max_tokens_per_doc was ignored."""
    documents = ["Paris is in France, on the Seine.", "Paris is a city.", "fruit"]

    def scores(**extra):
        body = {"query": "where is paris", "documents": documents, "return_documents": True, **extra}
        response = httpx.post(roomy + "/v2/rerank", json=body)
        assert response.status_code == 200, response.text
        return {r["index"]: r["relevance_score"] for r in response.json()["results"]}, response.json()["results"]

    whole, _ = scores()
    cut, results = scores(max_tokens_per_doc=2)  # both Paris documents become "Paris is"
    assert whole[0] != pytest.approx(whole[1]) and cut[0] == pytest.approx(cut[1]) and cut[2] == pytest.approx(whole[2])
    assert {r["document"]["text"] for r in results} == set(documents)  # returned as sent
    assert scores(max_tokens_per_doc=4096)[0] == pytest.approx(whole)  # beyond the window: the window applies
    vectors = {"query": "q", "vectors": model.encode(documents).tolist(), "max_tokens_per_doc": 2}
    refused = httpx.post(roomy + "/v2/rerank", json=vectors)
    assert refused.status_code == 422 and "stored vectors" in refused.json()["message"]


def test_a_body_of_many_tiny_values_is_refused_before_it_is_parsed(url, model, monkeypatch):
    """Issue 26 (8): a body of millions of tiny strings was parsed whole (a gigabyte, a stalled server)
    before the candidate limit refused it. Now it is counted on its bytes and never parsed."""
    import json

    parsed = []
    loads = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **kw: parsed.append(len(text)) or loads(text, *a, **kw))
    strings = json.dumps({"query": "q", "texts": [""] * 12_000}).encode()  # 48 KB: under the 0.05 MiB cap
    numbers = json.dumps({"query": "q", "texts": ["a"], "vectors": [[0] * 12_000]}).encode()
    for body, found in ((strings, "strings"), (numbers, "values")):
        response = httpx.post(url + "/rerank", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413 and found in response.json()["error"], response.text
        assert len(body) not in parsed
    assert httpx.get(url + "/health").status_code == 200
    fine = json.dumps({"query": "q", "texts": DOCS, "vectors": model.encode(DOCS).tolist()}).encode()
    assert httpx.post(url + "/rerank", content=fine, headers={"content-type": "application/json"}).status_code == 200


def test_the_body_cap_follows_the_document_limits(model):
    """Issue 26 (8): the cap is what max_candidates documents of max_chars text and their vectors need,
    not a flat 64 MiB."""
    from resrank_rag.serve.body_limit import BodyLimits

    settings = ServeSettings(max_candidates=5, max_chars=500)
    cap = BodyLimits.of(settings, model.embedding_dim).max_bytes
    assert cap < settings.max_body_mb * 2**20 / 100
    with serving_in_thread(create_app(model, settings)) as base:
        over = httpx.post(base + "/embed", json={"inputs": ["z" * cap]})
        assert over.status_code == 413 and "MiB" in over.json()["error"]
        largest = {"query": "q" * 10, "texts": ["\u00e9" * 98] * 5, "vectors": (-np.ones((5, model.embedding_dim)) / 3).tolist(),
                   "query_vector": (np.ones(model.embedding_dim) / 3).tolist(), "return_text": True}
        text = json.dumps(largest, indent=8)  # the largest request the limits allow, pretty-printed, escaped
        assert httpx.post(base + "/rerank", content=text, headers={"content-type": "application/json"}).status_code == 200
