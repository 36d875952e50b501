"""ResRankEmbeddings: plain floats, the model's own vectors, the cache, async variants."""

import numpy as np
import pytest
from langchain_resrank import ResRankEmbeddings

from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.testing import tiny_resrank

TEXTS = ["one passage", "another passage", "one passage"]


def test_documents_are_the_models_passage_vectors_as_plain_floats(tiny_model):
    vectors = ResRankEmbeddings(model=tiny_model).embed_documents(TEXTS)
    assert all(type(x) is float for row in vectors for x in row)
    np.testing.assert_allclose(np.array(vectors), tiny_model.encode(TEXTS), rtol=1e-6, atol=1e-6)


def test_query_is_the_models_query_vector(tiny_model):
    vector = ResRankEmbeddings(model=tiny_model).embed_query("a question")
    assert all(type(x) is float for x in vector)
    np.testing.assert_allclose(vector, tiny_model.encode_query("a question"), rtol=1e-6, atol=1e-6)


def test_empty_document_list(tiny_model):
    assert ResRankEmbeddings(model=tiny_model).embed_documents([]) == []


def test_cache_encodes_each_text_once(tiny_model, memory_cache):
    embeddings = ResRankEmbeddings(model=tiny_model, cache=memory_cache)
    first = embeddings.embed_documents(TEXTS)
    second = embeddings.embed_documents(TEXTS)
    assert memory_cache.encoded_count == 2  # two distinct texts, encoded once across both calls
    assert first == second


def test_cache_of_another_encoder_is_refused(tiny_model):
    other = EmbeddingCache(tiny_resrank(seed=1), ":memory:")
    with pytest.raises(ValueError, match="same model"):
        ResRankEmbeddings(model=tiny_model, cache=other)


async def test_async_variants_match_sync(tiny_model):
    embeddings = ResRankEmbeddings(model=tiny_model)
    assert await embeddings.aembed_documents(TEXTS) == embeddings.embed_documents(TEXTS)
    assert await embeddings.aembed_query("q") == embeddings.embed_query("q")


def test_unknown_field_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="extra"):
        ResRankEmbeddings(model=tiny_model, modle_name="typo")
