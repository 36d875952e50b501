"""`resrank serve` against real, unmodified clients over loopback: each gets what in-process ResRank gives."""

import asyncio

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install -e '.[serve]'")
from resrank_rag.serve import ServeSettings, create_app
from resrank_rag.serve.server import serving_in_thread
from resrank_rag.testing import perturb_heads, tiny_resrank

QUERY = "what is the capital of france"
DOCS = [
    "Bananas are a yellow fruit.",
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower stands in Paris.",
    "Berlin is the capital of Germany.",
    "France borders Spain and Italy.",
]


@pytest.fixture(scope="module")
def model():
    model = tiny_resrank()
    perturb_heads(model)  # the reranker branch contributes, so batching and padding are really exercised
    return model


@pytest.fixture(scope="module")
def url(model):
    with serving_in_thread(create_app(model, ServeSettings(max_batch=8))) as base:
        yield base


def expected(model, query=QUERY, docs=DOCS, top_n=None):
    return [(r.index, r.score) for r in model.rerank(query, docs, top_n=top_n)]


def test_cohere_client_v2_rerank(model, url):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=url, max_retries=0)
    response = client.rerank(model="resrank", query=QUERY, documents=DOCS, top_n=3)
    got = [(r.index, r.relevance_score) for r in response.results]
    assert [i for i, _ in got] == [i for i, _ in expected(model, top_n=3)]
    assert np.allclose([s for _, s in got], [s for _, s in expected(model, top_n=3)], atol=1e-5)


def test_cohere_stored_vectors_extension(model, url):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="unused", base_url=url, max_retries=0)
    vectors = model.encode(DOCS).tolist()
    response = client.rerank(model="resrank", query=QUERY, documents=DOCS,
                             request_options={"additional_body_parameters": {"vectors": vectors}})
    assert [r.index for r in response.results] == [i for i, _ in expected(model)]


def test_openai_embeddings_create(model, url):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    reference = model.encode(DOCS[:3])
    default = client.embeddings.create(model="resrank", input=DOCS[:3])  # the client asks for base64
    as_float = client.embeddings.create(model="resrank", input=DOCS[:3], encoding_format="float")
    for response in (default, as_float):
        assert [d.index for d in response.data] == [0, 1, 2]
        assert np.allclose([d.embedding for d in response.data], reference, atol=1e-5)
    query = client.embeddings.create(model="resrank", input=QUERY, extra_body={"input_type": "query"})
    assert np.allclose(query.data[0].embedding, model.encode_queries([QUERY])[0], atol=1e-5)


def test_async_openai_concurrent_calls(model, url):
    openai = pytest.importorskip("openai")

    async def many():
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        responses = await asyncio.gather(*(client.embeddings.create(model="m", input=[d]) for d in DOCS))
        await client.close()
        return [r.data[0].embedding for r in responses]

    assert np.allclose(asyncio.run(many()), model.encode(DOCS), atol=1e-5)


def test_llamaindex_tei_rerank_postprocessor(model, url):
    tei = pytest.importorskip("llama_index.postprocessor.tei_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.0) for i, d in enumerate(DOCS)]
    reranker = tei.TextEmbeddingInference(base_url=url, top_n=3)
    ranked = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    want = expected(model, top_n=3)
    assert [n.node.id_ for n in ranked] == [str(i) for i, _ in want]
    assert np.allclose([n.score for n in ranked], [s for _, s in want], atol=1e-5)


def test_llamaindex_tei_embeddings(model, url):
    tei = pytest.importorskip("llama_index.embeddings.text_embeddings_inference")
    embedder = tei.TextEmbeddingsInference(model_name="resrank", base_url=url)
    assert np.allclose(embedder.get_text_embedding_batch(DOCS), model.encode(DOCS), atol=1e-5)


def test_huggingface_hub_inference_client_feature_extraction(model, url):
    from huggingface_hub import InferenceClient

    vectors = InferenceClient(model=f"{url}/embed").feature_extraction(DOCS[1])
    assert np.allclose(vectors[0], model.encode([DOCS[1]])[0], atol=1e-5)


def test_concurrent_rerank_callers_each_get_their_own_ranking(model, url):
    """Lists of different lengths and queries, sent at once, are batched and answered to the right caller."""
    import httpx

    jobs = [(f"{QUERY} {i}", DOCS[: 2 + i % 4]) for i in range(12)]

    async def send_all():
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(*(http.post("/rerank", json={"query": q, "texts": d}) for q, d in jobs))

    responses = asyncio.run(send_all())
    for (query, docs), response in zip(jobs, responses):
        assert response.status_code == 200
        got = response.json()
        want = expected(model, query, docs)
        assert [r["index"] for r in got] == [i for i, _ in want]
        assert np.allclose([r["score"] for r in got], [s for _, s in want], atol=1e-5)
