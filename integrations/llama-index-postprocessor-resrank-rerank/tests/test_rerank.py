"""ResRankRerank conformance: base class, scores, top_n / threshold, async, events, JSON, no re-encoding."""

import json
import threading

import numpy as np
import pytest
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.embeddings.resrank import ResRankEmbedding
from llama_index.postprocessor.resrank_rerank import ResRankRerank

from .conftest import QUERY, TEXTS


def make_nodes(model=None):
    """Nodes with first-stage scores and metadata; with ``model``, node.embedding holds its passage vectors."""
    vectors = model.encode(TEXTS).tolist() if model is not None else [None] * len(TEXTS)
    return [
        NodeWithScore(node=TextNode(text=t, metadata={"source": f"doc{i}"}, embedding=v), score=1.0 - i / 10)
        for i, (t, v) in enumerate(zip(TEXTS, vectors))
    ]


@pytest.fixture
def rerank(tiny):
    return ResRankRerank(model=tiny, top_n=len(TEXTS), cache=":memory:")


def test_is_a_llama_index_postprocessor(rerank, tiny):
    assert isinstance(rerank, BaseNodePostprocessor)
    assert ResRankRerank.class_name() == "ResRankRerank"
    assert rerank.model is tiny
    config = rerank.to_dict()
    assert config["top_n"] == len(TEXTS) and config["model_name"] == tiny.name
    assert config["class_name"] == "ResRankRerank"


def test_order_and_scores_match_the_core_model(rerank, tiny):
    reranked = rerank.postprocess_nodes(make_nodes(tiny), query_str=QUERY)
    expected = tiny.rerank(QUERY, TEXTS)
    assert [n.node.get_content() for n in reranked] == [r.text for r in expected]
    np.testing.assert_allclose([n.score for n in reranked], [r.score for r in expected], atol=1e-5)
    assert all(type(n.score) is float for n in reranked)


def test_node_with_score_serialises_to_json(rerank, tiny):
    for node in rerank.postprocess_nodes(make_nodes(tiny), query_str=QUERY):
        data = json.loads(node.to_json())
        assert data["score"] == node.score
        restored = TextNode.from_dict(data["node"])  # NodeWithScore.from_json cannot rebuild the node subclass
        assert restored.get_content() == node.node.get_content()
        assert restored.metadata == node.node.metadata


def test_top_n_and_score_threshold(tiny):
    full = ResRankRerank(model=tiny, top_n=len(TEXTS), cache=":memory:").postprocess_nodes(
        make_nodes(tiny), query_str=QUERY
    )
    top2 = ResRankRerank(model=tiny, top_n=2, cache=":memory:").postprocess_nodes(make_nodes(tiny), query_str=QUERY)
    assert [n.node.get_content() for n in top2] == [n.node.get_content() for n in full[:2]]
    threshold = (full[2].score + full[3].score) / 2
    kept = ResRankRerank(model=tiny, top_n=len(TEXTS), score_threshold=threshold, cache=":memory:").postprocess_nodes(
        make_nodes(tiny), query_str=QUERY
    )
    assert [n.node.get_content() for n in kept] == [n.node.get_content() for n in full[:3]]
    assert all(n.score >= threshold for n in kept)


def test_metadata_preserved_and_retrieval_score_kept(tiny):
    nodes = make_nodes(tiny)
    first_stage = {n.node.node_id: n.score for n in nodes}
    reranked = ResRankRerank(model=tiny, top_n=4, keep_retrieval_score=True, cache=":memory:").postprocess_nodes(
        nodes, query_str=QUERY
    )
    for node in reranked:
        assert node.node.metadata["source"] == f"doc{TEXTS.index(node.node.get_content())}"
        assert node.node.metadata["retrieval_score"] == pytest.approx(first_stage[node.node.node_id])
        assert type(node.node.metadata["retrieval_score"]) is float


def test_empty_inputs_and_missing_query(rerank, rerank_events):
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert [type(e) for e in rerank_events] == [ReRankStartEvent, ReRankEndEvent]
    with pytest.raises(ValueError, match="needs the query"):
        rerank.postprocess_nodes(make_nodes())


def test_instrumentation_events(rerank, tiny, rerank_events):
    reranked = rerank.postprocess_nodes(make_nodes(tiny), query_str=QUERY)
    start, end = rerank_events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert len(start.nodes) == len(TEXTS) and start.top_n == len(TEXTS) and start.model_name == tiny.name
    assert start.query.query_str == QUERY
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in reranked]


@pytest.mark.asyncio
async def test_async_equals_sync_and_runs_off_the_event_loop(rerank, tiny, monkeypatch):
    threads = []
    original = tiny.rerank

    def recording_rerank(*args, **kwargs):
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny, "rerank", recording_rerank)
    nodes = make_nodes(tiny)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    asynchronous = await rerank.apostprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in asynchronous] == [(n.node.node_id, n.score) for n in sync]
    assert threads[0] == threading.get_ident() and threads[1] != threading.get_ident()


def test_node_embeddings_are_never_re_encoded(tiny, count_encodes):
    nodes = make_nodes(tiny)
    query_vector = ResRankEmbedding(model=tiny, cache=":memory:").get_query_embedding(QUERY)  # provably this encoder's
    counter = count_encodes(tiny)
    rerank = ResRankRerank(model=tiny, top_n=3, cache=":memory:")
    reranked = rerank.postprocess_nodes(nodes, QueryBundle(QUERY, embedding=query_vector))
    assert len(reranked) == 3
    assert (counter.passages, counter.queries) == (0, 0)


def test_nodes_without_embeddings_are_encoded_once_via_the_cache(tiny, count_encodes):
    counter = count_encodes(tiny)
    rerank = ResRankRerank(model=tiny, top_n=3, cache=":memory:")
    first = rerank.postprocess_nodes(make_nodes(), query_str=QUERY)
    second = rerank.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert counter.passages == len(TEXTS)
    assert [n.score for n in first] == [n.score for n in second]


def test_embeddings_of_another_model_are_replaced_with_a_warning(tiny, count_encodes):
    nodes = [NodeWithScore(node=TextNode(text=t, embedding=[0.5] * 7), score=0.0) for t in TEXTS]
    counter = count_encodes(tiny)
    with pytest.warns(UserWarning, match="dimension"):
        reranked = ResRankRerank(model=tiny, top_n=2, cache=":memory:").postprocess_nodes(nodes, query_str=QUERY)
    assert counter.passages == len(TEXTS)
    assert [n.node.get_content() for n in reranked] == [r.text for r in tiny.rerank(QUERY, TEXTS, top_n=2)]


def test_vectors_are_read_from_qdrant_when_nodes_lack_them(tiny, documents, make_qdrant_index, count_encodes):
    embed = ResRankEmbedding(model=tiny, cache=":memory:")
    index, store = make_qdrant_index(documents, embed)
    retrieved = index.as_retriever(similarity_top_k=6).retrieve("Which tower is in Paris?")
    assert len(retrieved) == 6 and all(n.node.embedding is None for n in retrieved)  # Qdrant omits vectors
    with_vectors = [
        NodeWithScore(node=n.node.model_copy(update={"embedding": v}), score=n.score)
        for n, v in zip(retrieved, tiny.encode([n.node.get_content(metadata_mode="embed") for n in retrieved]).tolist())
    ]
    counter = count_encodes(tiny)
    from_store = ResRankRerank(model=tiny, top_n=6, vector_store=store, cache=embed.cache).postprocess_nodes(
        retrieved, query_str="Which tower is in Paris?"
    )
    assert counter.passages == 0  # the store's vectors were checked against the shared cache, not re-encoded
    direct = ResRankRerank(model=tiny, top_n=6, cache=":memory:").postprocess_nodes(
        with_vectors, query_str="Which tower is in Paris?"
    )
    assert [n.node.node_id for n in from_store] == [n.node.node_id for n in direct]
    np.testing.assert_allclose([n.score for n in from_store], [n.score for n in direct], atol=1e-5)
    assert {n.node.metadata["topic"] for n in from_store} <= {"landmarks", "biology", "computing", "geography"}


def test_clear_errors(tiny):
    with pytest.raises(TypeError, match="QdrantVectorStore"):
        ResRankRerank(model=tiny, vector_store=object(), cache=":memory:")
    with pytest.raises(ValueError):
        ResRankRerank(model=tiny, top_n=0, cache=":memory:")


def test_query_engine_encodes_only_the_query_once(tiny, documents, make_qdrant_index, count_encodes):
    from llama_index.core.llms import MockLLM

    embed = ResRankEmbedding(model=tiny, cache=":memory:")
    index, store = make_qdrant_index(documents, embed)
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=8),
        similarity_top_k=6,
        node_postprocessors=[ResRankRerank(model=tiny, top_n=2, vector_store=store, cache=embed.cache)],
    )
    counter = count_encodes(tiny)
    response = engine.query("Which tower is in Paris?")
    assert len(response.source_nodes) == 2 and all(type(n.score) is float for n in response.source_nodes)
    assert (counter.passages, counter.queries) == (0, 1)  # the retriever's query vector is reused
