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
def embed_cache(tiny):
    """The cache ResRankEmbedding writes; a reranker given it checks the store's vectors without encoding."""
    from resrank_rag.embedding_cache import EmbeddingCache

    return EmbeddingCache(tiny, ":memory:")


@pytest.fixture
def qdrant(tiny, documents, make_qdrant_index, embed_cache):
    return make_qdrant_index(documents, ResRankEmbedding(model=tiny, cache=embed_cache))


def test_qdrant_path_retrieves_k_and_reranks_to_top_n_without_encoding_passages(tiny, qdrant, count_encodes, embed_cache):
    index, store = qdrant
    retriever = ResRankRetriever(store, tiny, k=6, top_n=3, keep_retrieval_score=True, cache=embed_cache)
    assert isinstance(retriever, BaseRetriever)
    counter = count_encodes(tiny)
    results = retriever.retrieve(QUERY)
    assert (counter.passages, counter.queries) == (0, 1)
    assert len(results) == 3 and all(type(n.score) is float for n in results)
    assert [n.score for n in results] == sorted((n.score for n in results), reverse=True)

    dense = index.as_retriever(similarity_top_k=6).retrieve(QUERY)  # the same first stage, through LlamaIndex
    assert {n.node.node_id for n in dense} >= {n.node.node_id for n in results}
    expected = ResRankRerank(model=tiny, top_n=3, vector_store=store, cache=embed_cache).postprocess_nodes(
        dense, query_str=QUERY
    )
    assert [n.node.node_id for n in results] == [n.node.node_id for n in expected]
    np.testing.assert_allclose([n.score for n in results], [n.score for n in expected], atol=1e-5)
    by_id = {n.node.node_id: n.score for n in dense}
    for node in results:
        assert node.node.metadata["retrieval_score"] == pytest.approx(by_id[node.node.node_id], abs=1e-5)
        assert "topic" in node.node.metadata and "rank" in node.node.metadata


@pytest.mark.asyncio
async def test_async_equals_sync(tiny, qdrant, embed_cache):
    retriever = ResRankRetriever(qdrant[1], tiny, k=8, top_n=4, cache=embed_cache)
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
    index_module = pytest.importorskip("resrank_rag.index")
    index = index_module.ResRankIndex(tiny, collection="docs", path=":memory:")
    texts = ["The Amazon river carries the most water.", "Everest is the highest mountain.", "Qdrant stores vectors."]
    index.index([index_module.Document(id=f"d{i}", text=t, metadata={"n": i}) for i, t in enumerate(texts)])
    counter = count_encodes(tiny)
    results = ResRankRetriever(index, tiny, k=3, top_n=2, first_stage=first_stage, cache=":memory:").retrieve(QUERY)
    assert (counter.passages, counter.queries) == (0, 1)  # the query is encoded once
    assert len(results) == 2 and all(isinstance(n, NodeWithScore) and type(n.score) is float for n in results)
    expected = tiny.rerank(QUERY, texts, top_n=2)
    assert [n.node.get_content() for n in results] == [r.text for r in expected]
    assert [n.node.node_id for n in results] == [f"d{r.index}" for r in expected]
    assert [n.node.metadata["n"] for n in results] == [r.index for r in expected]


def test_core_index_rejects_a_model_with_another_encoder(tiny):
    index_module = pytest.importorskip("resrank_rag.index")
    from resrank_rag.testing import tiny_resrank

    index = index_module.ResRankIndex(tiny, collection="docs", path=":memory:")
    with pytest.raises(ValueError, match="another encoder"):
        ResRankRetriever(index, tiny_resrank(seed=3), cache=":memory:")


# ---------------------------------------------------------------- filters, one encode, async-only stores

ZOO = ["Zebras have black and white stripes.", "Lions hunt zebras on the savanna.", "Qdrant stores vectors.",
       "The Amazon river carries the most water.", "Rainbows show stripes of colour."]


def core_index(tiny):
    from resrank_rag.index import Document, ResRankIndex

    index = ResRankIndex(tiny, collection="zoo", path=":memory:")
    index.index([Document(f"d{i}", t, {"topic": "zoo" if "ebra" in t else "other", "n": i}) for i, t in enumerate(ZOO)])
    return index


def topic_filters(value):
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    return MetadataFilters(filters=[MetadataFilter(key="topic", value=value)])


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_core_index_path_encodes_the_query_once_and_honours_metadata_filters(tiny, count_encodes, first_stage):
    index = core_index(tiny)
    retriever = ResRankRetriever(index, k=5, top_n=5, first_stage=first_stage, filters=topic_filters("zoo"),
                                 cache=":memory:")
    counter = count_encodes(tiny)
    results = retriever.retrieve("striped animals")
    assert (counter.passages, counter.queries) == (0, 1)
    assert sorted(n.node.node_id for n in results) == ["d0", "d1"]


def test_core_index_path_honours_qdrant_filters_too(tiny):
    from qdrant_client import models

    only_d3 = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d3"))])
    retriever = ResRankRetriever(core_index(tiny), k=5, qdrant_filters=only_d3, filters=topic_filters("other"),
                                 cache=":memory:")
    assert [n.node.node_id for n in retriever.retrieve("water")] == ["d3"]
    both_fail = ResRankRetriever(core_index(tiny), k=5, qdrant_filters=only_d3, filters=topic_filters("zoo"),
                                 cache=":memory:")
    assert both_fail.retrieve("water") == []  # both filters apply, neither replaces the other


def test_a_query_bundle_embedding_of_this_encoder_is_used_instead_of_encoding(tiny, count_encodes, qdrant, embed_cache):
    from llama_index.core.schema import QueryBundle

    from resrank_rag.testing import tiny_resrank

    index = core_index(tiny)
    bundle = QueryBundle(query_str=QUERY, embedding=ResRankEmbedding(model=tiny, cache=embed_cache).get_query_embedding(QUERY))
    counter = count_encodes(tiny)
    for store in (index, qdrant[1]):
        assert ResRankRetriever(store, tiny, k=4, top_n=2, cache=embed_cache).retrieve(bundle)
    assert (counter.passages, counter.queries) == (0, 0)
    plain = [(n.node.node_id, n.score) for n in ResRankRetriever(index, k=4, cache=embed_cache).retrieve(QUERY)]
    other = tiny_resrank(seed=9).encode_query(QUERY).tolist()  # another encoder, the same dimension
    for foreign in ([0.1, 0.2], other):  # not this encoder's: the query is encoded instead
        found = ResRankRetriever(index, k=4, cache=embed_cache).retrieve(QueryBundle(query_str=QUERY, embedding=foreign))
        assert [n.node.node_id for n in found] == [i for i, _ in plain]
        np.testing.assert_allclose([n.score for n in found], [s for _, s in plain], atol=1e-6)


def test_qdrant_path_honours_metadata_filters_with_the_stores_builder(tiny, qdrant, count_encodes, embed_cache):
    retriever = ResRankRetriever(qdrant[1], tiny, k=8, top_n=8, filters=topic_filters("geography"), cache=embed_cache)
    counter = count_encodes(tiny)
    results = retriever.retrieve(QUERY)
    assert (counter.passages, counter.queries) == (0, 1)
    assert {n.node.metadata["topic"] for n in results} == {"geography"} and len(results) == 2


def test_arguments_that_cannot_apply_are_refused(tiny, qdrant, embed_cache):
    with pytest.raises(ValueError, match="first_stage='hybrid' needs a resrank_rag ResRankIndex"):
        ResRankRetriever(qdrant[1], tiny, first_stage="hybrid", cache=embed_cache)
    with pytest.raises(ValueError, match="first_stage must be"):
        ResRankRetriever(core_index(tiny), first_stage="sparse", cache=embed_cache)
    with pytest.raises(TypeError, match="qdrant_client.models.Filter"):
        ResRankRetriever(qdrant[1], tiny, qdrant_filters={"topic": "geography"}, cache=embed_cache)
    with pytest.raises(TypeError, match="MetadataFilters"):
        ResRankRetriever(qdrant[1], tiny, filters={"topic": "geography"}, cache=embed_cache)
    from qdrant_client import models

    bare = models.Filter(must=[models.FieldCondition(key="topic", match=models.MatchValue(value="zoo"))])
    with pytest.raises(ValueError, match="'metadata.topic'"):
        ResRankRetriever(core_index(tiny), qdrant_filters=bare, cache=embed_cache)


async def test_a_store_with_only_an_async_client_works_in_aretrieve_and_apostprocess(tiny, documents, count_encodes):
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import AsyncQdrantClient

    embed = ResRankEmbedding(model=tiny, cache=":memory:")
    nodes = SentenceSplitter(chunk_size=512).get_nodes_from_documents(documents)
    texts = [n.get_content(metadata_mode="embed") for n in nodes]  # what LlamaIndex embeds
    for node, vector in zip(nodes, embed.get_text_embedding_batch(texts)):
        node.embedding = vector
    store = QdrantVectorStore(collection_name="async-only", aclient=AsyncQdrantClient(location=":memory:"))
    assert store.client is None
    await store.async_add(nodes)

    counter = count_encodes(tiny)
    results = await ResRankRetriever(store, tiny, k=6, top_n=3, cache=embed.cache).aretrieve(QUERY)
    assert len(results) == 3 and (counter.passages, counter.queries) == (0, 1)
    with pytest.raises(ValueError, match="only an async client"):
        ResRankRetriever(store, tiny, k=6, cache=":memory:").retrieve(QUERY)

    bare = [NodeWithScore(node=n.node.model_copy(update={"embedding": None}), score=n.score) for n in results]
    reranker = ResRankRerank(model=tiny, top_n=2, vector_store=store, cache=embed.cache)
    reranked = await reranker.apostprocess_nodes(bare, query_str=QUERY)
    assert counter.passages == 0  # the vectors came through the async client
    assert [n.node.node_id for n in reranked] == [n.node.node_id for n in results[:2]]


def test_a_collection_of_another_encoder_is_refused(tiny, documents, make_qdrant_index):
    from resrank_rag.testing import tiny_resrank

    _, store = make_qdrant_index(documents, ResRankEmbedding(model=tiny_resrank(seed=9), cache=":memory:"))
    with pytest.raises(ValueError, match="another encoder"):
        ResRankRetriever(store, tiny, k=4, cache=":memory:").retrieve(QUERY)


def test_ordered_reaches_the_reranker(tiny, qdrant, embed_cache):
    assert ResRankRetriever(qdrant[1], tiny, ordered=False, cache=embed_cache).reranker.ordered is False
    assert ResRankRetriever(qdrant[1], tiny, cache=embed_cache).reranker.ordered is None
