"""The LangChain components against the core with every part of the score live: non-zero heads, a non-zero
prior, documents in shuffled order. Same scores as ResRank.rerank, caller objects untouched, one query encode."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_qdrant import QdrantVectorStore

from langchain_resrank import ResRankCompressor, ResRankEmbeddings, ResRankRetriever
from resrank_rag.embedding_cache import EmbeddingCache

from ..conftest import TEXTS

QUERY = "how does one forward pass rerank a list?"


@pytest.fixture
def query_encodes(trained, monkeypatch):
    seen = []
    original = trained.encode_queries

    def encode_queries(texts, *args, **kwargs):
        seen.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(trained, "encode_queries", encode_queries)
    return seen


def shuffled(seed=0):
    order = list(range(len(TEXTS)))
    random.Random(seed).shuffle(order)
    return [Document(page_content=TEXTS[i], metadata={"source": f"doc-{i}", "tags": ["a"]}) for i in order]


@pytest.mark.parametrize("ordered", [None, True, False])
def test_compressor_scores_equal_the_core_for_shuffled_documents(trained, ordered, query_encodes):
    documents = shuffled()
    before = copy.deepcopy(documents)
    texts = [d.page_content for d in documents]
    expected = trained.rerank(QUERY, texts, ordered=ordered)
    query_encodes.clear()
    compressor = ResRankCompressor(model=trained, top_n=None, ordered=ordered, cache=EmbeddingCache(trained, ":memory:"))
    reranked = compressor.compress_documents(documents, QUERY)
    assert query_encodes == [QUERY]
    assert [d.page_content for d in reranked] == [r.text for r in expected]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in reranked], [r.score for r in expected], atol=1e-5)
    assert documents == before  # the caller's documents and their metadata are untouched
    assert all("relevance_score" not in d.metadata for d in documents)


def test_the_prior_is_per_component_not_global(trained):
    documents = shuffled(seed=1)
    cache = EmbeddingCache(trained, ":memory:")
    with_prior = ResRankCompressor(model=trained, top_n=None, cache=cache).compress_documents(documents, QUERY)
    without = ResRankCompressor(model=trained, top_n=None, ordered=False, cache=cache).compress_documents(documents, QUERY)
    assert [d.metadata["relevance_score"] for d in with_prior] != pytest.approx(
        [d.metadata["relevance_score"] for d in without], abs=1e-4
    )
    assert trained.config.rank_prior  # nothing was switched on the shared model


@pytest.mark.parametrize("ordered", [None, False])
def test_retriever_scores_equal_the_core_and_encode_the_query_once(trained, ordered, query_encodes):
    store = QdrantVectorStore.from_texts(
        TEXTS, ResRankEmbeddings(model=trained), location=":memory:", collection_name="trained"
    )
    retriever = ResRankRetriever(vector_store=store, k=len(TEXTS), ordered=ordered)
    assert retriever.model is trained
    query_encodes.clear()
    documents = retriever.invoke(QUERY)
    assert query_encodes == [QUERY]
    first_stage = store.similarity_search(QUERY, k=len(TEXTS))  # the retriever's candidates, in their order
    expected = trained.rerank(QUERY, [d.page_content for d in first_stage], ordered=ordered)
    assert [d.page_content for d in documents] == [r.text for r in expected]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in documents], [r.score for r in expected], atol=1e-5)


def test_model_takes_a_name_or_an_instance_and_device_only_with_a_name(trained, tmp_path):
    trained.save_pretrained(tmp_path / "ckpt")
    by_name = ResRankCompressor(model=str(tmp_path / "ckpt"), cache=None)
    assert by_name.model_name == str(tmp_path / "ckpt")
    assert by_name.model.encoder_fingerprint == trained.encoder_fingerprint
    for component in (ResRankCompressor, ResRankEmbeddings):
        with pytest.raises(ValueError, match="device only applies when loading by model_name"):
            component(model=trained, device="cpu")
