"""Changing documents: stale chunks, delete, sync, streaming, filters, Qdrant-native hybrid, reopening."""

import tomllib
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models

from resrank_rag.documents import chunk_document
from resrank_rag.index import Document, ModelMismatchError, ResRankIndex, SyncReport, point_id
from resrank_rag.testing import tiny_resrank

WORDS = [f"w{i}" for i in range(40)]


def words(n: int, start: int = 0) -> str:
    return " ".join(WORDS[start : start + n])


def points(index: ResRankIndex) -> dict[str, dict]:
    """chunk id -> payload of every point in the collection."""
    found = index.client.scroll(index.collection, limit=10_000, with_payload=True)[0]
    return {p.payload["chunk_id"]: p.payload for p in found}


def expected_chunks(documents, chunk_size, overlap):
    return {c.id: c.text for d in documents for c in chunk_document(d, chunk_size, overlap)}


@pytest.fixture
def count_encodes(monkeypatch):
    """``count_encodes(model)`` -> {"passages": n, "queries": n}, counting what the encoder is given."""

    def start(model):
        counts = {"passages": 0, "queries": 0}
        encode, encode_queries = model.encode, model.encode_queries

        def passages(texts, *args, **kwargs):
            counts["passages"] += len(texts)
            return encode(texts, *args, **kwargs)

        def queries(texts, *args, **kwargs):
            counts["queries"] += len(texts)
            return encode_queries(texts, *args, **kwargs)

        monkeypatch.setattr(model, "encode", passages)
        monkeypatch.setattr(model, "encode_queries", queries)
        return counts

    return start


# ---------------------------------------------------------------- stale chunks


def test_a_document_growing_from_one_chunk_to_several_leaves_no_old_point(tiny):
    index = ResRankIndex(tiny, "grow", path=":memory:")
    index.index([Document("doc", "old text about tides"), Document("other", "unrelated")], chunk_size=10, overlap=2)
    index.index([Document("doc", words(25)), Document("other", "unrelated")], chunk_size=10, overlap=2)
    assert set(points(index)) == {"doc#0", "doc#1", "doc#2", "other"}
    assert all("tides" not in h.text for h in index.search("tides", k=10, top_n=10, rerank=False))


def test_a_shrinking_document_loses_its_tail_chunks_even_when_its_head_is_unchanged(tiny):
    index = ResRankIndex(tiny, "shrink", path=":memory:")
    index.index([Document("doc", words(34))], chunk_size=10, overlap=2)  # windows start at 0, 8, 16, 24
    assert set(points(index)) == {"doc#0", "doc#1", "doc#2", "doc#3"}
    index.index([Document("doc", words(26))], chunk_size=10, overlap=2)  # doc#0..2 are byte-identical
    assert set(points(index)) == {"doc#0", "doc#1", "doc#2"}
    index.index([Document("doc", "one short chunk")], chunk_size=10, overlap=2)
    assert set(points(index)) == {"doc"}
    assert points(index)["doc"]["text"] == "one short chunk" and points(index)["doc"]["doc_id"] == "doc"


def test_chunks_carry_their_document_id_for_payload_filters(tiny):
    index = ResRankIndex(tiny, "ids", path=":memory:")
    index.index([Document("manual", words(20), {"lang": "en"})], chunk_size=10, overlap=2)
    payloads = points(index)
    assert {p["doc_id"] for p in payloads.values()} == {"manual"}
    assert payloads["manual#1"]["metadata"] == {"lang": "en", "source": "manual", "chunk": 1}
    hit = index.search("w12", k=5, top_n=1, rerank=False)[0]
    assert hit.doc_id == "manual" and hit.id.startswith("manual#")


# ---------------------------------------------------------------- delete and sync


def test_delete_removes_every_chunk_of_the_documents_named(tiny):
    index = ResRankIndex(tiny, "delete", path=":memory:")
    index.index([Document("long", words(30)), Document("keep", "stays here"), Document("gone", "goes")], chunk_size=10)
    assert index.delete(["long", "gone", "never-indexed"]) == 4  # long has 3 chunks (no overlap)
    assert set(points(index)) == {"keep"}
    assert index.delete([]) == 0 and index.delete(["long"]) == 0
    with pytest.raises(TypeError, match=r"delete\(\['keep'\]\)"):
        index.delete("keep")
    assert ResRankIndex(tiny, "missing", path=":memory:").delete(["x"]) == 0


def test_sync_adds_rechunks_and_removes_then_is_idempotent(tiny, count_encodes):
    index = ResRankIndex(tiny, "sync", path=":memory:")
    first = [Document("a", "alpha note"), Document("b", words(20)), Document("c", "gamma note"), Document("d", "delta")]
    report = index.sync(first, chunk_size=10, overlap=2)
    assert report == SyncReport(documents=4, chunks=6, written=6, removed=0)
    assert {c: p["text"] for c, p in points(index).items()} == expected_chunks(first, 10, 2)

    second = [
        Document("a", words(20, 10)),  # split into chunks
        Document("b", "b is short now"),  # shrunk to one chunk
        Document("c", "gamma note", {"edited": True}),  # metadata only: keeps its vector
        Document("e", "epsilon arrives"),  # new; d is gone
    ]
    vector_c = index.client.retrieve("sync", [point_id("c")], with_vectors=True)[0].vector
    counts = count_encodes(tiny)
    report = index.sync(iter(second), chunk_size=10, overlap=2)
    assert counts["passages"] == 3 + 1 + 1  # a's three chunks, b, e; not c
    assert report.documents == 4 and report.removed == 1 + 3 + 1  # old a, b's three chunks, d
    stored = points(index)
    assert {c: p["text"] for c, p in stored.items()} == expected_chunks(second, 10, 2)
    assert stored["c"]["metadata"] == {"edited": True}
    kept = index.client.retrieve("sync", [point_id("c")], with_vectors=True)[0].vector
    np.testing.assert_allclose(kept[""], vector_c[""], atol=1e-6)  # reused (Qdrant renormalises it)

    counts["passages"] = 0
    assert index.sync(second, chunk_size=10, overlap=2) == SyncReport(documents=4, chunks=6, written=0, removed=0)
    assert counts["passages"] == 0


def test_sync_reads_a_folder_and_removes_points_of_other_writers(tmp_path, tiny):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("apples and pears")
    (tmp_path / "docs" / "b.md").write_text("bananas")
    index = ResRankIndex(tiny, "folder", path=":memory:")
    index.index([Document("stray", "indexed by hand")])
    report = index.sync(tmp_path / "docs")
    assert report.removed == 1 and set(points(index)) == {"a.txt", "b.md"}
    (tmp_path / "docs" / "b.md").unlink()
    assert index.sync(str(tmp_path / "docs")).removed == 1 and set(points(index)) == {"a.txt"}


def test_sync_refuses_an_empty_source_and_bad_arguments(tmp_path, tiny):
    index = ResRankIndex(tiny, "refuse", path=":memory:")
    index.index([Document("a", "kept")])
    with pytest.raises(ValueError, match="would empty the collection"):
        index.sync([])
    assert index.count() == 1
    with pytest.raises(ValueError, match="overlap needs chunk_size"):
        index.sync([Document("a", "kept")], overlap=3)
    with pytest.raises(ValueError, match="overlap < chunk_size"):
        index.index([Document("a", "kept")], chunk_size=5, overlap=5)
    with pytest.raises(ValueError, match="appears twice"):
        index.index([Document("x", words(20)), Document("x#1", "clashes with x's second chunk")], chunk_size=10)
    with pytest.raises(FileNotFoundError):
        index.sync(tmp_path / "nowhere")


def test_index_consumes_its_iterable_batch_by_batch(tiny):
    index = ResRankIndex(tiny, "stream", path=":memory:")
    consumed, at_first_upsert = [0], []

    def documents():
        for i in range(40):
            consumed[0] += 1
            yield Document(f"d{i}", f"passage {i}")

    upsert = index.client.upsert
    index.client.upsert = lambda *a, **kw: at_first_upsert.append(consumed[0]) or upsert(*a, **kw)
    assert index.index(documents(), batch_size=8) == 40
    assert at_first_upsert[0] <= 9 and len(at_first_upsert) == 5  # the first batch was written before more was read


# ---------------------------------------------------------------- hybrid in Qdrant


CORPUS = [
    "zebra stripes on the savanna",
    "the savanna at dusk",
    "lions hunt zebra zebra herds",
    "apple orchard harvest in autumn",
    "volcano lava eruption",
    "stripes of colour in a rainbow",
]


def test_qdrant_bm25_scores_equal_bm25s(tiny):
    import bm25s
    import Stemmer

    index = ResRankIndex(tiny, "bm25", path=":memory:")
    index.index([Document(f"d{i}", t) for i, t in enumerate(CORPUS)])
    stemmer = Stemmer.Stemmer("english").stemWords
    reference = bm25s.BM25()  # method "lucene", k1 1.5, b 0.75
    reference.index(bm25s.tokenize(CORPUS, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    from resrank_rag.index.sparse import tokenize

    for query in ("zebra stripes", "savanna", "autumn harvest lava"):
        expected = reference.get_scores(bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False,
                                                       show_progress=False)[0])
        bag = tokenize([query])[0]
        found = index.client.query_points(
            "bm25", query=models.SparseVector(indices=sorted(bag), values=[1.0] * len(bag)), using="bm25", limit=10,
            with_payload=True,
        ).points
        scores = {int(p.payload["doc_id"][1:]): p.score for p in found}
        assert set(scores) == {i for i, s in enumerate(expected) if s > 0}
        np.testing.assert_allclose([scores[i] for i in sorted(scores)], [expected[i] for i in sorted(scores)], rtol=1e-4)


def test_hybrid_is_one_qdrant_query_fusing_dense_and_bm25_by_rrf(tiny, count_encodes):
    from resrank_rag.index.sparse import tokenize

    index = ResRankIndex(tiny, "fusion", path=":memory:")
    index.index([Document(f"d{i}", t) for i, t in enumerate(CORPUS)])
    bag = tokenize(["zebra stripes"])[0]
    sparse_query = models.SparseVector(indices=sorted(bag), values=[1.0] * len(bag))
    sparse = [p.payload["doc_id"] for p in index.client.query_points(
        "fusion", query=sparse_query, using="bm25", limit=6, with_payload=True).points]
    assert sorted(sparse) == ["d0", "d2", "d5"]
    calls = []
    for name in ("query_points", "query_batch_points", "retrieve", "scroll", "count", "collection_exists"):
        original = getattr(index.client, name)
        setattr(index.client, name, lambda *a, _o=original, _n=name, **kw: calls.append(_n) or _o(*a, **kw))
    counts = count_encodes(tiny)
    fused = index.search("zebra stripes", k=6, top_n=6, rerank=False, first_stage="hybrid")
    assert calls == ["query_points"] and counts == {"passages": 0, "queries": 1}

    query = tiny.encode_query("zebra stripes")
    corpus = tiny.encode(CORPUS)
    dense = [f"d{i}" for i in np.argsort(-(corpus @ query), kind="stable")]
    expected = {}
    for ranking in (dense, sparse):
        for rank, doc in enumerate(ranking, 1):
            expected[doc] = expected.get(doc, 0.0) + 1 / (60 + rank)
    assert {h.id: h.retrieval_score for h in fused} == pytest.approx(expected)
    assert [h.retrieval_score for h in fused] == sorted((h.retrieval_score for h in fused), reverse=True)


def test_hybrid_reads_the_current_text_after_another_writer_rewrites_it(tiny):
    index = ResRankIndex(tiny, "writers", path=":memory:")
    index.index([Document(f"d{i}", t) for i, t in enumerate(CORPUS)])
    assert index.search("zebra", k=6, top_n=1, rerank=False, first_stage="hybrid")  # warm whatever is cached
    other = ResRankIndex(tiny, "writers", path=":memory:")
    other.client.close()
    other.client = index.client  # a second writer on the same collection; the point count stays the same
    other.index([Document("d2", "quokka selfies on an island"), Document("d0", "plain grassland")])
    top = index.search("quokka", k=6, top_n=1, rerank=False, first_stage="hybrid")[0]
    assert top.id == "d2" and top.text == "quokka selfies on an island"
    dense_top = index.search("zebra", k=6, top_n=1, rerank=False)[0]
    assert index.search("zebra", k=6, top_n=1, rerank=False, first_stage="hybrid")[0].id == dense_top.id


# ---------------------------------------------------------------- filters and query vectors


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_search_filter_applies_to_both_first_stages(tiny, first_stage):
    index = ResRankIndex(tiny, "filters", path=":memory:")
    index.index([Document(f"d{i}", t, {"dept": "zoo" if "zebra" in t else "other"}) for i, t in enumerate(CORPUS)])
    only_zoo = models.Filter(must=[models.FieldCondition(key="metadata.dept", match=models.MatchValue(value="zoo"))])
    hits = index.search("stripes savanna", k=6, top_n=6, first_stage=first_stage, filter=only_zoo)
    assert sorted(h.id for h in hits) == ["d0", "d2"]
    by_doc = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d4"))])
    assert [h.id for h in index.retrieve_with_vectors("lava", 6, first_stage, filter=by_doc)[0]] == ["d4"]


def test_nonsense_filters_are_rejected_with_a_clear_error(tiny):
    index = ResRankIndex(tiny, "nonsense", path=":memory:")
    index.index([Document("d0", "text", {"dept": "zoo"})])
    with pytest.raises(TypeError, match="qdrant_client.models.Filter"):
        index.search("text", filter={"dept": "zoo"})
    bare_key = models.Filter(must=[models.FieldCondition(key="dept", match=models.MatchValue(value="zoo"))])
    with pytest.raises(ValueError, match="'metadata.dept'"):
        index.search("text", filter=bare_key, first_stage="hybrid")


def test_a_given_query_vector_is_not_encoded_again(tiny, count_encodes):
    index = ResRankIndex(tiny, "qv", path=":memory:")
    index.index([Document(f"d{i}", t) for i, t in enumerate(CORPUS)])
    vector = tiny.encode_query("zebra")
    counts = count_encodes(tiny)
    hits = index.search("zebra", k=6, top_n=3, query_vector=vector, first_stage="hybrid")
    assert counts == {"passages": 0, "queries": 0} and len(hits) == 3
    with pytest.raises(ValueError, match="query_vector must have shape"):
        index.search("zebra", query_vector=vector[:3])


# ---------------------------------------------------------------- opening, closing, versions


def test_close_and_context_manager_release_the_embedded_folder(tmp_path, tiny):
    with ResRankIndex(tiny, "ctx", path=str(tmp_path)) as index:
        index.index([Document("a", "first")])
    with ResRankIndex(tiny, "ctx", path=str(tmp_path)) as reopened:  # would fail while the folder is locked
        assert reopened.count() == 1
    reopened = ResRankIndex(tiny, "ctx", path=str(tmp_path))
    reopened.close()
    ResRankIndex(tiny, "ctx", path=str(tmp_path)).close()


def test_a_server_too_old_for_collection_metadata_is_named(tiny, monkeypatch):
    index = ResRankIndex(tiny, "old", path=":memory:")
    index.client.create_collection("old", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    monkeypatch.setattr(index.client, "info", lambda: models.VersionInfo(title="qdrant", version="1.15.4"))
    with pytest.raises(RuntimeError, match=r"version 1\.15\.4.*needs Qdrant 1\.16 or newer"):
        index.search("anything")
    monkeypatch.setattr(index.client, "info", lambda: models.VersionInfo(title="qdrant", version="1.17.0"))
    with pytest.raises(ModelMismatchError, match="not created by ResRankIndex"):
        index.search("anything")


def test_creating_a_collection_on_a_server_that_drops_metadata_is_refused_and_leaves_nothing(tiny, monkeypatch):
    index = ResRankIndex(tiny, "dropped", path=":memory:")
    create = index.client.create_collection
    # What a Qdrant server older than 1.16 does: it accepts the request and silently drops the metadata.
    monkeypatch.setattr(index.client, "create_collection", lambda *a, metadata=None, **kw: create(*a, **kw))
    monkeypatch.setattr(index.client, "info", lambda: models.VersionInfo(title="qdrant", version="1.15.4"))
    with pytest.raises(RuntimeError, match=r"version 1\.15\.4.*needs Qdrant 1\.16 or newer"):
        index.index([Document("a", "text")])
    assert not index.client.collection_exists("dropped")  # no collection that every later open would refuse


def test_a_collection_from_before_sparse_vectors_says_to_reindex(tiny):
    index = ResRankIndex(tiny, "legacy", path=":memory:")
    record = {"resrank_model": tiny.name, "encoder_fingerprint": tiny.encoder_fingerprint,
              "vector_size": tiny.embedding_dim}
    index.client.create_collection(
        "legacy", vectors_config=models.VectorParams(size=tiny.embedding_dim, distance=models.Distance.COSINE),
        metadata=record,
    )
    vector = tiny.encode(["old passage"])[0].tolist()
    payload = {"doc_id": "old", "text": "old passage", "metadata": {}}
    index.client.upsert("legacy", [models.PointStruct(id=point_id("old"), vector=vector, payload=payload)])
    reopened = ResRankIndex(tiny, "legacy", path=":memory:")
    reopened.client.close()
    reopened.client = index.client
    assert reopened.search("old", k=1, top_n=1)[0].id == "old"  # dense search still works
    with pytest.raises(ValueError, match="index into a new collection"):
        reopened.search("old", first_stage="hybrid")
    with pytest.raises(ValueError, match="index into a new collection"):
        reopened.index([Document("new", "text")])


def test_the_qdrant_client_floor_has_collection_metadata():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    floor = next(d for d in pyproject["project"]["dependencies"] if d.startswith("qdrant-client"))
    version = tuple(int(p) for p in floor.split(">=")[1].split(",")[0].split(".")[:2])
    assert version >= (1, 16), floor  # create_collection(metadata=...) and models.Rrf(k=...) arrived in 1.16


def test_url_is_the_only_change_to_run_against_a_server(tiny, monkeypatch):
    """``url=`` (and ``api_key=``) go to QdrantClient and nothing else changes; a server also gets its doc_id index."""
    import resrank_rag.index.collection as collection_module  # where the client is made

    made, indexed, real = [], [], collection_module.QdrantClient

    def client(*args, **kwargs):  # a stand-in server: the same client API, held in memory
        made.append(kwargs)
        if "url" not in kwargs:
            return real(*args, **kwargs)
        server = real(location=":memory:")
        server.create_payload_index = lambda name, field, schema, **kw: indexed.append((name, field, schema))
        return server

    monkeypatch.setattr(collection_module, "QdrantClient", client)
    with pytest.raises(ValueError, match="either path= .* or url="):
        ResRankIndex(tiny, "served", path="folder", url="http://qdrant.internal:6333")
    documents = [Document("a", words(12)), Document("b", "zebra stripes on the savanna")]
    with ResRankIndex(tiny, "served", url="http://qdrant.internal:6333", api_key="secret") as index:
        assert made == [{"url": "http://qdrant.internal:6333", "api_key": "secret"}]
        report = index.sync(documents, chunk_size=5, overlap=0)
        assert report.chunks == len(expected_chunks(documents, 5, 0))
        assert set(indexed) == {("served", "doc_id", models.PayloadSchemaType.KEYWORD)}  # the embedded mode has none
        for first_stage in ("dense", "hybrid"):
            assert index.search("zebra", k=5, top_n=1, first_stage=first_stage)[0].id == "b"
        only_a = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="a"))])
        assert {h.doc_id for h in index.search("zebra", k=5, filter=only_a, first_stage="hybrid")} == {"a"}
        assert index.delete(["a"]) == report.chunks - 1 and index.count() == 1


def test_another_model_still_cannot_open_the_collection(tmp_path, tiny):
    with ResRankIndex(tiny, "guard", path=str(tmp_path)) as index:
        index.sync([Document("a", "text")])
    with pytest.raises(ModelMismatchError):
        ResRankIndex(tiny_resrank(seed=1), "guard", path=str(tmp_path))
