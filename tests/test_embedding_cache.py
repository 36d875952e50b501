import numpy as np

from resrank_rag.embedding_cache import EmbeddingCache

TEXTS = ["alpha beta", "gamma delta", "epsilon"]


def test_encodes_each_text_once_and_persists(tiny, tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = EmbeddingCache(tiny, path)
    first = cache.encode(TEXTS)
    np.testing.assert_allclose(first, tiny.encode(TEXTS), atol=1e-6)
    assert cache.encoded_count == 3
    again = cache.encode(TEXTS[::-1] + ["zeta", "zeta"])
    assert cache.encoded_count == 4 and again.shape == (5, tiny.embedding_dim)
    np.testing.assert_array_equal(again[:3], first[::-1])
    cache.close()
    reopened = EmbeddingCache(tiny, path)
    np.testing.assert_array_equal(reopened.encode(TEXTS), first)
    assert reopened.encoded_count == 0 and len(reopened) == 4


def test_different_encoders_do_not_share_vectors(tmp_path):
    from resrank_rag.testing import tiny_resrank

    a, b = tiny_resrank(seed=0), tiny_resrank(seed=1)
    assert a.encoder_fingerprint != b.encoder_fingerprint
    path = tmp_path / "shared.sqlite"
    EmbeddingCache(a, path).encode(TEXTS)
    cache_b = EmbeddingCache(b, path)
    np.testing.assert_allclose(cache_b.encode(TEXTS), b.encode(TEXTS), atol=1e-6)
    assert cache_b.encoded_count == 3


def test_empty_input(tiny):
    assert EmbeddingCache(tiny, ":memory:").encode([]).shape == (0, tiny.embedding_dim)


def test_text_with_lone_surrogates_is_cached(tiny):
    text = b"caf\xe9".decode("utf-8", errors="surrogateescape")  # what undecodable bytes become
    cache = EmbeddingCache(tiny, ":memory:")
    np.testing.assert_array_equal(cache.encode([text]), cache.encode([text]))
    assert cache.encoded_count == 1
