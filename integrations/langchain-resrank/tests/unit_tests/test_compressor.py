"""ResRankCompressor: ordering, top_n, threshold, metadata copies, async, empty input, no re-encoding."""

import copy
import warnings

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore
from langchain_resrank import ResRankCompressor

from resrank_rag.index import Document as IndexDocument
from resrank_rag.index import ResRankIndex

QUERY = "how does a reranker order passages?"


def plain_documents(texts):
    return [Document(page_content=t, metadata={"source": f"doc-{i}", "tags": ["x"]}) for i, t in enumerate(texts)]


@pytest.fixture
def texts(tiny_store):
    return [d.page_content for d in tiny_store.similarity_search(QUERY, k=6)]


def test_orders_like_the_model_with_float_scores(tiny_model, memory_cache, texts):
    compressor = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=None)
    ranked = compressor.compress_documents(plain_documents(texts), QUERY)
    expected = tiny_model.rerank(QUERY, texts)
    assert [d.page_content for d in ranked] == [r.text for r in expected]
    scores = [d.metadata["relevance_score"] for d in ranked]
    assert all(type(s) is float for s in scores)
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, [r.score for r in expected], rtol=1e-5)


def test_top_n_keeps_the_best(tiny_model, memory_cache, texts):
    everything = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=None).compress_documents(
        plain_documents(texts), QUERY
    )
    best_two = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=2).compress_documents(
        plain_documents(texts), QUERY
    )
    assert [d.page_content for d in best_two] == [d.page_content for d in everything[:2]]
    assert (
        ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=50).compress_documents(
            plain_documents(texts), QUERY
        )
        == everything
    )


def test_score_threshold_drops_low_scores(tiny_model, memory_cache, texts):
    everything = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=None).compress_documents(
        plain_documents(texts), QUERY
    )
    cut = everything[2].metadata["relevance_score"]
    kept = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=None, score_threshold=cut).compress_documents(
        plain_documents(texts), QUERY
    )
    assert kept == [d for d in everything if d.metadata["relevance_score"] >= cut]
    assert 3 <= len(kept) < len(everything)


def test_returns_copies_and_leaves_callers_documents_alone(tiny_model, memory_cache, texts):
    given = plain_documents(texts)
    before = copy.deepcopy(given)
    ranked = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=3).compress_documents(given, QUERY)
    assert given == before
    assert all("relevance_score" not in d.metadata for d in given)
    for document in ranked:
        original = next(d for d in given if d.page_content == document.page_content)
        assert document is not original and document.metadata is not original.metadata
        assert {k: v for k, v in document.metadata.items() if k != "relevance_score"} == original.metadata


async def test_async_matches_sync(tiny_model, memory_cache, texts):
    compressor = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=4)
    assert await compressor.acompress_documents(plain_documents(texts), QUERY) == compressor.compress_documents(
        plain_documents(texts), QUERY
    )


async def test_empty_input(tiny_model, memory_cache, count_passage_encodes):
    calls = count_passage_encodes(tiny_model)
    compressor = ResRankCompressor(model=tiny_model, cache=memory_cache)
    assert compressor.compress_documents([], QUERY) == []
    assert await compressor.acompress_documents([], QUERY) == []
    assert sum(calls) == 0


def test_rejects_bad_top_n_and_empty_query(tiny_model, memory_cache, texts):
    with pytest.raises(ValueError):
        ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=0)
    with pytest.raises(ValueError, match="query"):
        ResRankCompressor(model=tiny_model, cache=memory_cache).compress_documents(plain_documents(texts), "  ")


def test_store_vectors_are_reused_without_encoding_a_passage(tiny_model, tiny_store, memory_cache, count_passage_encodes):
    from_store = tiny_store.similarity_search(QUERY, k=6)
    compressor = ResRankCompressor(model=tiny_model, vector_store=tiny_store, cache=memory_cache, top_n=None)
    calls = count_passage_encodes(tiny_model)
    ranked = compressor.compress_documents(from_store, QUERY)
    assert sum(calls) == 0 and memory_cache.encoded_count == 0
    # the fetched vectors are the real ones: same ranking and scores as encoding the texts afresh
    fresh = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=None).compress_documents(
        plain_documents([d.page_content for d in from_store]), QUERY
    )
    assert [d.page_content for d in ranked] == [d.page_content for d in fresh]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in ranked], [d.metadata["relevance_score"] for d in fresh], rtol=1e-5
    )


def test_cache_encodes_each_passage_once(tiny_model, memory_cache, texts, count_passage_encodes):
    compressor = ResRankCompressor(model=tiny_model, cache=memory_cache, top_n=2)
    calls = count_passage_encodes(tiny_model)
    first = compressor.compress_documents(plain_documents(texts), QUERY)
    second = compressor.compress_documents(plain_documents(texts), "another question")
    assert sum(calls) == len(texts) == memory_cache.encoded_count
    assert first and second


def test_documents_from_elsewhere_are_encoded_alongside_stored_ones(tiny_model, tiny_store, memory_cache, count_passage_encodes):
    mixed = tiny_store.similarity_search(QUERY, k=3) + plain_documents(["a passage no store holds"])
    compressor = ResRankCompressor(model=tiny_model, vector_store=tiny_store, cache=memory_cache, top_n=None)
    calls = count_passage_encodes(tiny_model)
    ranked = compressor.compress_documents(mixed, QUERY)
    assert sum(calls) == 1
    assert sorted(d.page_content for d in ranked) == sorted(d.page_content for d in mixed)


class ForeignEmbeddings(Embeddings):
    """Another embedding model of the same width: its vectors live in a different space."""

    def __init__(self, dim):
        self.dim = dim

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        return np.random.default_rng(len(text)).normal(size=self.dim).tolist()


def test_store_of_another_embedding_model_is_not_trusted(tiny_model, memory_cache, count_passage_encodes):
    store = QdrantVectorStore.from_texts(
        ["alpha", "beta gamma", "delta"],
        ForeignEmbeddings(tiny_model.embedding_dim),
        location=":memory:",
        collection_name="foreign",
    )
    with pytest.warns(UserWarning, match="does not hold vectors of this ResRank encoder"):
        compressor = ResRankCompressor(model=tiny_model, vector_store=store, cache=memory_cache, top_n=None)
    calls = count_passage_encodes(tiny_model)
    compressor.compress_documents(store.similarity_search("alpha", k=3), "alpha")
    assert sum(calls) == 3


def test_collection_built_by_resrank_index_is_trusted_by_its_model_record(tiny_model, memory_cache, count_passage_encodes):
    index = ResRankIndex(tiny_model, "core", path=":memory:")
    index.index([IndexDocument(f"d{i}", t) for i, t in enumerate(["alpha", "beta gamma", "delta", "epsilon"])])
    store = QdrantVectorStore(
        client=index.client,
        collection_name="core",
        embedding=ForeignEmbeddings(tiny_model.embedding_dim),  # not a ResRankEmbeddings: the record decides
        content_payload_key="text",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compressor = ResRankCompressor(model=tiny_model, vector_store=store, cache=memory_cache, top_n=2)
    calls = count_passage_encodes(tiny_model)
    ranked = compressor.compress_documents(store.similarity_search("beta", k=4), "beta")
    assert sum(calls) == 0 and len(ranked) == 2
