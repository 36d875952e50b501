"""ResRankRetriever: first stage with stored vectors, one rerank pass, no passage re-encoding."""

import numpy as np
import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore
from llama_index.embeddings.resrank import ResRankEmbedding
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from llama_index.retrievers.resrank import ResRankRetriever

QUERY = "Which river carries the most water?"


@pytest.fixture
def qdrant(tiny, documents, make_qdrant_index):
    return make_qdrant_index(documents, ResRankEmbedding(model=tiny, cache=":memory:"))


def test_qdrant_path_retrieves_k_and_reranks_to_top_n_without_encoding_passages(tiny, qdrant, count_encodes):
    index, store = qdrant
    retriever = ResRankRetriever(store, tiny, k=6, top_n=3, keep_retrieval_score=True, cache=":memory:")
    assert isinstance(retriever, BaseRetriever)
    counter = count_encodes(tiny)
    results = retriever.retrieve(QUERY)
    assert (counter.passages, counter.queries) == (0, 1)
    assert len(results) == 3 and all(type(n.score) is float for n in results)
    assert [n.score for n in results] == sorted((n.score for n in results), reverse=True)

    dense = index.as_retriever(similarity_top_k=6).retrieve(QUERY)  # the same first stage, through LlamaIndex
    assert {n.node.node_id for n in dense} >= {n.node.node_id for n in results}
    expected = ResRankRerank(model=tiny, top_n=3, vector_store=store, cache=":memory:").postprocess_nodes(
        dense, query_str=QUERY
    )
    assert [n.node.node_id for n in results] == [n.node.node_id for n in expected]
    np.testing.assert_allclose([n.score for n in results], [n.score for n in expected], atol=1e-5)
    by_id = {n.node.node_id: n.score for n in dense}
    for node in results:
        assert node.node.metadata["retrieval_score"] == pytest.approx(by_id[node.node.node_id], abs=1e-5)
        assert "topic" in node.node.metadata and "rank" in node.node.metadata


@pytest.mark.asyncio
async def test_async_equals_sync(tiny, qdrant):
    retriever = ResRankRetriever(qdrant[1], tiny, k=8, top_n=4, cache=":memory:")
    sync = retriever.retrieve(QUERY)
    asynchronous = await retriever.aretrieve(QUERY)
    assert [(n.node.node_id, n.score) for n in asynchronous] == [(n.node.node_id, n.score) for n in sync]


def test_clear_errors(tiny):
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    with pytest.raises(TypeError, match="QdrantVectorStore or a resrank_rag ResRankIndex"):
        ResRankRetriever(object(), tiny, cache=":memory:")
    empty = QdrantVectorStore(collection_name="nothing-here", client=QdrantClient(location=":memory:"))
    with pytest.raises(ValueError, match="does not exist"):
        ResRankRetriever(empty, tiny, cache=":memory:").retrieve(QUERY)
    with pytest.raises(ValueError, match="positive integer"):
        ResRankRetriever(empty, tiny, k=0, cache=":memory:")


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_core_index_path(tiny, count_encodes, first_stage):
    index_module = pytest.importorskip("resrank_rag.index", reason="resrank_rag.index (issue 5) is not there yet")
    index = index_module.ResRankIndex(tiny, collection="docs", path=":memory:")
    texts = ["The Amazon river carries the most water.", "Everest is the highest mountain.", "Qdrant stores vectors."]
    index.index([index_module.Document(id=f"d{i}", text=t, metadata={"n": i}) for i, t in enumerate(texts)])
    counter = count_encodes(tiny)
    results = ResRankRetriever(index, tiny, k=3, top_n=2, first_stage=first_stage, cache=":memory:").retrieve(QUERY)
    assert counter.passages == 0
    assert len(results) == 2 and all(isinstance(n, NodeWithScore) and type(n.score) is float for n in results)
    expected = tiny.rerank(QUERY, texts, top_n=2)
    assert [n.node.get_content() for n in results] == [r.text for r in expected]
    assert [n.node.node_id for n in results] == [f"d{r.index}" for r in expected]
    assert [n.node.metadata["n"] for n in results] == [r.index for r in expected]


def test_core_index_rejects_a_model_with_another_encoder(tiny):
    index_module = pytest.importorskip("resrank_rag.index", reason="resrank_rag.index (issue 5) is not there yet")
    from resrank_rag.testing import tiny_resrank

    index = index_module.ResRankIndex(tiny, collection="docs", path=":memory:")
    with pytest.raises(ValueError, match="another encoder"):
        ResRankRetriever(index, tiny_resrank(seed=3), cache=":memory:")
