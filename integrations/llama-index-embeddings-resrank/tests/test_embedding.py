"""ResRankEmbedding conformance: base class, types, batching, sync/async equivalence, caching."""

import math

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.embeddings.resrank import ResRankEmbedding
from resrank_rag.embedding_cache import EmbeddingCache


@pytest.fixture
def embed(tiny):
    return ResRankEmbedding(model=tiny, cache=":memory:", embed_batch_size=3)


def test_is_a_llama_index_embedding(embed, tiny):
    assert isinstance(embed, BaseEmbedding)
    assert ResRankEmbedding.class_name() == "ResRankEmbedding"
    assert embed.model is tiny
    assert embed.model_name == tiny.name
    assert embed.to_dict()["embed_batch_size"] == 3


def test_embeddings_are_plain_float_lists_equal_to_the_core_model(embed, tiny):
    texts = ["alpha beta", "gamma delta epsilon", "zeta"]
    vectors = embed.get_text_embedding_batch(texts)
    query = embed.get_query_embedding("what is alpha?")
    for vector in vectors + [query]:
        assert type(vector) is list and len(vector) == tiny.embedding_dim
        assert all(type(x) is float for x in vector)
        assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-4)
    np.testing.assert_allclose(vectors, tiny.encode(texts), atol=1e-5)
    np.testing.assert_allclose(query, tiny.encode_query("what is alpha?"), atol=1e-5)
    np.testing.assert_allclose(embed.get_text_embedding("zeta"), vectors[2], atol=1e-5)


@pytest.mark.asyncio
async def test_async_equals_sync(embed):
    texts = [f"passage number {i} about topic {i % 3}" for i in range(7)]
    sync = embed.get_text_embedding_batch(texts)
    assert await embed.aget_text_embedding_batch(texts) == sync
    assert await embed.aget_text_embedding(texts[0]) == sync[0]
    assert await embed.aget_query_embedding("a question") == embed.get_query_embedding("a question")


def test_batches_follow_embed_batch_size(tiny, count_encodes):
    counter = count_encodes(tiny)
    embed = ResRankEmbedding(model=tiny, cache=":memory:", embed_batch_size=3)
    embed.get_text_embedding_batch([f"text {i}" for i in range(7)])
    assert counter.passages == 7
    assert embed.cache.encoded_count == 7
    assert len(embed.cache) == 7


def test_texts_are_encoded_once_through_the_cache(tiny, count_encodes, tmp_path):
    cache_file = tmp_path / "vectors.sqlite"
    counter = count_encodes(tiny)
    first = ResRankEmbedding(model=tiny, cache=str(cache_file)).get_text_embedding_batch(["one", "two"])
    again = ResRankEmbedding(model=tiny, cache=str(cache_file)).get_text_embedding_batch(["two", "one", "three"])
    assert counter.passages == 3  # "one", "two", then only "three"
    assert again[0] == first[1] and again[1] == first[0]


def test_empty_batch(embed):
    assert embed.get_text_embedding_batch([]) == []


def test_clear_errors(tiny):
    with pytest.raises(ValueError, match="device only applies when loading by model_name"):
        ResRankEmbedding(model=tiny, device="cpu", cache=":memory:")
    with pytest.raises(TypeError, match="resrank_rag.ResRank or a model name"):
        ResRankEmbedding(model=42, cache=":memory:")
    from resrank_rag.testing import tiny_resrank

    other = EmbeddingCache(tiny_resrank(seed=1), ":memory:")
    with pytest.raises(ValueError, match="another encoder"):
        ResRankEmbedding(model=tiny, cache=other)
