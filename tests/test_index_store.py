"""ResRankIndex over in-memory and embedded Qdrant with a tiny random ResRank."""

import numpy as np
import pytest

from resrank_rag.index import Document, ModelMismatchError, ResRankIndex, SearchHit, point_id
from resrank_rag.testing import tiny_resrank

TOPICS = ["apple orchard harvest", "volcano lava eruption", "chess opening theory", "river delta sediment"]
DOCS = [
    Document(f"d{i}", f"note {i} on {TOPICS[i % 4]} and more", {"topic": i % 4, "tags": ["x", str(i)]})
    for i in range(24)
]


def count_encoded_texts(model) -> list[int]:
    """Patch the encoder so every text it runs on is counted; returns the one-item counter."""
    counter = [0]
    forward = model.encoder.forward

    def counting(features, **kwargs):
        counter[0] += len(features["input_ids"])
        return forward(features, **kwargs)

    model.encoder.forward = counting
    return counter


@pytest.fixture
def memory_index(tiny):
    index = ResRankIndex(tiny, "notes", path=":memory:")
    index.index(DOCS, batch_size=5)
    return index


def test_index_stores_one_point_per_document_with_agreed_payload(memory_index, tiny):
    assert memory_index.count() == len(DOCS)
    record = memory_index.client.retrieve("notes", [point_id("d3")], with_payload=True, with_vectors=True)[0]
    assert record.payload["doc_id"] == record.payload["chunk_id"] == "d3"
    assert record.payload["text"] == DOCS[3].text
    assert record.payload["metadata"] == DOCS[3].metadata
    np.testing.assert_allclose(record.vector[""], tiny.encode([DOCS[3].text])[0], atol=1e-5)
    assert record.vector["bm25"].indices  # the BM25 sparse vector beside the dense one
    config = memory_index.client.get_collection("notes").config.params
    assert config.vectors.size == tiny.embedding_dim and config.vectors.distance.value == "Cosine"
    assert config.sparse_vectors["bm25"].modifier.value == "idf"


def test_reindexing_changes_nothing_and_encodes_nothing(memory_index, tiny):
    counter = count_encoded_texts(tiny)
    before = memory_index.client.scroll("notes", limit=100, with_payload=True, with_vectors=True)[0]
    assert memory_index.index(DOCS) == 0
    assert counter[0] == 0
    after = memory_index.client.scroll("notes", limit=100, with_payload=True, with_vectors=True)[0]
    key = lambda p: str(p.id)  # noqa: E731
    assert [(str(p.id), p.payload, p.vector) for p in sorted(before, key=key)] == [
        (str(p.id), p.payload, p.vector) for p in sorted(after, key=key)
    ]


def test_reindexing_encodes_only_changed_texts_and_keeps_vectors_on_metadata_change(memory_index, tiny):
    counter = count_encoded_texts(tiny)
    changed = list(DOCS)
    changed[0] = Document("d0", "a completely new text about tides", DOCS[0].metadata)
    changed[1] = Document("d1", DOCS[1].text, {"topic": 99})
    old_vector = memory_index.client.retrieve("notes", [point_id("d1")], with_vectors=True)[0].vector
    assert memory_index.index(changed + [Document("new", "fresh arrival")]) == 3
    assert counter[0] == 2  # d0's new text and the new document; d1 kept its stored vector
    assert memory_index.count() == len(DOCS) + 1
    d1 = memory_index.client.retrieve("notes", [point_id("d1")], with_payload=True, with_vectors=True)[0]
    assert d1.payload["metadata"] == {"topic": 99} and d1.vector == old_vector
    d0 = memory_index.client.retrieve("notes", [point_id("d0")], with_payload=True)[0]
    assert d0.payload["text"] == "a completely new text about tides"


def test_search_reranks_stored_vectors_encoding_only_the_query(memory_index, tiny):
    counter = count_encoded_texts(tiny)
    hits = memory_index.search("volcano lava", k=12, top_n=5)
    assert counter[0] == 1  # the query; no candidate passage is re-encoded
    assert len(hits) == 5 and all(isinstance(h, SearchHit) for h in hits)
    assert all(type(h.retrieval_score) is float and type(h.rerank_score) is float for h in hits)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
    candidates, vectors = memory_index.retrieve_with_vectors("volcano lava", k=12)
    expected = tiny.rerank("volcano lava", [c.text for c in candidates], top_n=5)  # encodes texts from scratch
    assert [h.id for h in hits] == [candidates[r.index].id for r in expected]
    np.testing.assert_allclose([h.rerank_score for h in hits], [r.score for r in expected], atol=1e-5)
    by_id = {h.id: h for h in candidates}
    assert all(by_id[h.id].metadata == h.metadata and by_id[h.id].text == h.text for h in hits)


def test_untrained_rerank_keeps_the_dense_ranking(memory_index):
    reranked = memory_index.search("chess opening", k=24, top_n=24)
    dense = memory_index.search("chess opening", k=24, top_n=24, rerank=False)
    assert [h.id for h in reranked] == [h.id for h in dense]
    assert all(h.rerank_score is None for h in dense)
    np.testing.assert_allclose([h.rerank_score for h in reranked], [h.retrieval_score for h in dense], atol=1e-5)


def test_retrieve_with_vectors_returns_dense_order_and_stored_vectors(memory_index, tiny):
    hits, vectors = memory_index.retrieve_with_vectors("apple harvest", k=7)
    assert len(hits) == 7 and vectors.shape == (7, tiny.embedding_dim) and vectors.dtype == np.float32
    query = tiny.encode_query("apple harvest")
    corpus = tiny.encode([d.text for d in DOCS])
    best = np.argsort(-(corpus @ query), kind="stable")[:7]
    assert [h.id for h in hits] == [DOCS[i].id for i in best]
    np.testing.assert_allclose(vectors, corpus[best], atol=1e-5)
    np.testing.assert_allclose([h.retrieval_score for h in hits], (corpus @ query)[best], atol=1e-5)


def test_hybrid_first_stage_fuses_bm25_with_dense(tiny):
    index = ResRankIndex(tiny, "hybrid", path=":memory:")
    docs = DOCS + [Document("zebra", "zebra zebra stripes savanna")]
    index.index(docs)
    dense_ids = [h.id for h in index.search("zebra stripes", k=3, top_n=3, rerank=False)]
    counter = count_encoded_texts(tiny)
    hybrid = index.search("zebra stripes", k=3, top_n=3, first_stage="hybrid")
    assert counter[0] == 1  # BM25-only hits are reranked with their stored vectors too
    assert all(h.rerank_score is not None for h in hybrid)
    hybrid_ids = [h.id for h in hybrid]
    assert "zebra" in hybrid_ids  # the only BM25 match always makes the fused top 3
    assert set(hybrid_ids) <= set(dense_ids) | {"zebra"}
    fused = index.search("zebra stripes", k=3, top_n=3, rerank=False, first_stage="hybrid")
    assert fused[0].id == "zebra" or dense_ids[0] == fused[0].id
    assert all(0 < h.retrieval_score <= 2 / 61 for h in fused)


def test_embedded_folder_persists_and_rejects_another_encoder(tmp_path, tiny):
    index = ResRankIndex(tiny, "notes", path=str(tmp_path))
    index.index(DOCS[:6])
    index.client.close()
    reopened = ResRankIndex(tiny_resrank(seed=0), "notes", path=str(tmp_path))
    assert reopened.count() == 6
    assert reopened.search("volcano", k=6, top_n=2)[0].rerank_score is not None
    reopened.client.close()
    with pytest.raises(ModelMismatchError, match="Open it with the model that built it"):
        ResRankIndex(tiny_resrank(seed=1), "notes", path=str(tmp_path))
    with pytest.raises(ModelMismatchError, match="16 dims"):
        ResRankIndex(tiny_resrank(encoder_dim=16), "notes", path=str(tmp_path))


def test_clear_errors(tiny):
    index = ResRankIndex(tiny, "empty", path=":memory:")
    assert index.count() == 0
    with pytest.raises(ValueError, match="does not exist yet"):
        index.search("anything")
    with pytest.raises(ValueError, match="appears twice"):
        index.index([Document("a", "x"), Document("a", "y")])
    with pytest.raises(TypeError, match="wrap it as Document"):
        index.index(["plain text"])
    index.index(DOCS[:3])
    with pytest.raises(ValueError, match="first_stage"):
        index.search("q", first_stage="sparse")
    with pytest.raises(ValueError, match="non-empty"):
        index.search("  ")
