"""ResRankRerank against the core with every part of the score live: non-zero heads, a non-zero prior,
nodes in shuffled order. Same scores as ResRank.rerank, caller objects untouched, one query encode."""

import random

import numpy as np
import pytest
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.embeddings.resrank import ResRankEmbedding
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.testing import tiny_resrank

from .conftest import QUERY
from .conftest import TEXTS as SHARED_TEXTS

TEXTS = SHARED_TEXTS + ["The Statue of Liberty was dedicated in 1886."]


def shuffled_nodes(model, seed=0, with_embeddings=True):
    order = list(range(len(TEXTS)))
    random.Random(seed).shuffle(order)
    vectors = model.encode([TEXTS[i] for i in order])
    return [
        NodeWithScore(
            node=TextNode(text=TEXTS[i], metadata={"source": f"doc{i}"}, embedding=v.tolist() if with_embeddings else None),
            score=1.0 - rank / 10,
        )
        for rank, (i, v) in enumerate(zip(order, vectors))
    ]


def snapshot(nodes):
    return [(n.score, n.node.model_dump()) for n in nodes]


@pytest.mark.parametrize("ordered", [None, True, False])
def test_scores_equal_the_core_for_shuffled_nodes(trained, ordered, count_encodes):
    nodes = shuffled_nodes(trained)
    before = snapshot(nodes)
    query_vector = trained.encode_query(QUERY)
    expected = trained.rerank(
        QUERY, [n.node.text for n in nodes], vectors=np.asarray([n.node.embedding for n in nodes]),
        query_vector=query_vector, ordered=ordered,
    )
    counter = count_encodes(trained)
    rerank = ResRankRerank(model=trained, top_n=len(TEXTS), ordered=ordered, keep_retrieval_score=True, cache=":memory:")
    reranked = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert (counter.passages, counter.queries) == (0, 1)
    assert [n.node.text for n in reranked] == [r.text for r in expected]
    np.testing.assert_allclose([n.score for n in reranked], [r.score for r in expected], atol=1e-5)
    assert snapshot(nodes) == before  # the caller's nodes, their metadata and scores are untouched


def test_the_prior_is_per_component_not_global(trained):
    nodes = shuffled_nodes(trained)
    with_prior = ResRankRerank(model=trained, top_n=len(TEXTS), cache=":memory:").postprocess_nodes(nodes, query_str=QUERY)
    without = ResRankRerank(model=trained, top_n=len(TEXTS), ordered=False, cache=":memory:").postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.score for n in with_prior] != pytest.approx([n.score for n in without], abs=1e-4)
    assert trained.config.rank_prior  # nothing was switched on the shared model
    again = ResRankRerank(model=trained, top_n=len(TEXTS), cache=":memory:").postprocess_nodes(nodes, query_str=QUERY)
    assert [n.score for n in again] == [n.score for n in with_prior]


def test_keep_retrieval_score_changes_neither_the_callers_nodes_nor_the_next_call(trained):
    nodes = shuffled_nodes(trained, with_embeddings=False)  # the text is encoded, so metadata in it would show
    embed_text = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    rerank = ResRankRerank(model=trained, top_n=len(TEXTS), keep_retrieval_score=True, cache=":memory:")
    first = rerank.postprocess_nodes(nodes, query_str=QUERY)
    second = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in first] == [(n.node.node_id, n.score) for n in second]
    assert all("retrieval_score" not in n.node.metadata for n in nodes)
    assert [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes] == embed_text
    by_id = {n.node.node_id: n.score for n in nodes}
    for node in first:
        assert node.node.metadata["retrieval_score"] == pytest.approx(by_id[node.node.node_id])
        for mode in (MetadataMode.EMBED, MetadataMode.LLM):  # neither the embedder nor the LLM sees it
            assert "retrieval_score" not in node.node.get_content(metadata_mode=mode)
        assert "retrieval_score" in node.node.get_content(metadata_mode=MetadataMode.ALL)


def test_a_store_of_another_encoder_with_the_same_dimension_is_not_mixed_in(trained, documents, make_qdrant_index, count_encodes):
    other = tiny_resrank(seed=9)  # same dimension, another encoder
    assert other.embedding_dim == trained.embedding_dim and other.encoder_fingerprint != trained.encoder_fingerprint
    index, store = make_qdrant_index(documents, ResRankEmbedding(model=other, cache=":memory:"))
    question = "Which tower is in Paris?"
    retrieved = index.as_retriever(similarity_top_k=6).retrieve(question)
    bundle = QueryBundle(question, embedding=other.encode_query(question).tolist())  # as the query engine passes it
    counter = count_encodes(trained)
    rerank = ResRankRerank(model=trained, top_n=6, vector_store=store, cache=":memory:")
    with pytest.warns(UserWarning, match="another encoder"):
        reranked = rerank.postprocess_nodes(retrieved, bundle)
    assert counter.queries == 1  # the bundle's vector came from the other encoder: encoded with ours instead
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    expected = trained.rerank(question, texts)
    assert [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in reranked] == [r.text for r in expected]
    np.testing.assert_allclose([n.score for n in reranked], [r.score for r in expected], atol=1e-5)


def test_a_store_of_this_encoder_is_trusted_after_one_check(trained, documents, make_qdrant_index, count_encodes):
    index, store = make_qdrant_index(documents, ResRankEmbedding(model=trained, cache=":memory:"))
    retrieved = index.as_retriever(similarity_top_k=6).retrieve("Which tower is in Paris?")
    counter = count_encodes(trained)
    rerank = ResRankRerank(model=trained, top_n=6, vector_store=store, cache=EmbeddingCache(trained, ":memory:"))
    rerank.postprocess_nodes(retrieved, query_str="Which tower is in Paris?")
    rerank.postprocess_nodes(retrieved, query_str="Which mountain is highest?")
    assert counter.passages == 1  # one node's text, once, to compare with its stored vector


def test_model_takes_a_name_or_an_instance_and_device_only_with_a_name(trained, tmp_path):
    trained.save_pretrained(tmp_path / "ckpt")
    by_name = ResRankRerank(model=str(tmp_path / "ckpt"), top_n=2, cache=":memory:")
    assert by_name.model_name == str(tmp_path / "ckpt") and by_name.model.encoder_fingerprint == trained.encoder_fingerprint
    with pytest.raises(ValueError, match="device only applies when loading by model_name"):
        ResRankRerank(model=trained, device="cpu", cache=":memory:")


def test_a_query_engine_over_another_embedder_of_the_same_dimension_reranks_with_our_query_vector(trained, documents, make_qdrant_index):
    """Issue 26 (2): the retriever of a VectorStoreIndex built with another embedder stores that embedder's
    query vector in the QueryBundle; the postprocessor (no vector_store= given) must encode the query itself."""
    from llama_index.core.llms import MockLLM

    other = tiny_resrank(seed=9)  # the same dimension, another encoder
    assert other.embedding_dim == trained.embedding_dim and other.encoder_fingerprint != trained.encoder_fingerprint
    index, _ = make_qdrant_index(documents, ResRankEmbedding(model=other, cache=":memory:"))
    question = "Which tower is in Paris?"
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=8), similarity_top_k=6, node_postprocessors=[ResRankRerank(model=trained, top_n=6, cache=":memory:")]
    )
    reranked = engine.query(question).source_nodes
    retrieved = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in index.as_retriever(similarity_top_k=6).retrieve(question)]
    expected = trained.rerank(question, retrieved)  # our query vector, the nodes in the order the engine passed them
    assert [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in reranked] == [r.text for r in expected]
    np.testing.assert_allclose([n.score for n in reranked], [r.score for r in expected], atol=1e-5)
