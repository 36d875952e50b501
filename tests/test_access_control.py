"""Access control on every retrieval path: a user without access never gets a forbidden chunk.

The company folder of demos/sample_company.py holds two restricted documents (hr/salary-bands-2027.pdf
for group hr, hr/reorg-plan.docx for hr and executives). Bob (group staff) asks for them by quoting
them word for word, through the core index (dense and hybrid), both adapters over the core index and
over their frameworks' own Qdrant stores, the demo's web API and source links, and the CLI. The tiny
model ranks at random, so each search asks for every chunk (k = all): a forbidden chunk that were a
candidate at all would show up.
"""

import json

import pytest
from qdrant_client import models

from demos.sample_company import REORG_SECRET, SALARY_SECRET, USERS, make_company_folder
from resrank_rag.access import Principal, access_filter
from resrank_rag.documents import ReadReport, chunk_document, read_documents
from resrank_rag.index import AccessError, Document, ResRankIndex

FORBIDDEN_FOR_BOB = {"hr/salary-bands-2027.pdf", "hr/reorg-plan.docx"}
QUERIES = [SALARY_SECRET, REORG_SECRET, "salary bands 2027 confidential human resources", "reorganisation Lisbon"]
BOB = Principal("bob", USERS["bob"])
ALICE = Principal("alice", USERS["alice"])
ERIN = Principal("erin", USERS["erin"])
K = 64


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    return make_company_folder(tmp_path_factory.mktemp("northwind"))


@pytest.fixture(scope="module")
def chunks(company):
    return [c for d in read_documents(company, ReadReport(echo=lambda _: None)) for c in chunk_document(d, 40, 5)]


@pytest.fixture(scope="module")
def model():
    from resrank_rag.testing import tiny_resrank

    return tiny_resrank()


@pytest.fixture(scope="module")
def index(model, chunks):
    store = ResRankIndex(model, "company", path=":memory:")
    store.index(chunks)
    assert store.count() == len(chunks) < K  # every search below sees every chunk it may
    return store


def doc_of(chunk_id: str) -> str:
    return chunk_id.split("#")[0]


def test_the_corpus_holds_the_secrets_and_alice_finds_them(index):
    hits = index.search(SALARY_SECRET, k=K, top_n=K, principal=ALICE)
    assert FORBIDDEN_FOR_BOB <= {h.metadata["source"] for h in hits}
    assert any(SALARY_SECRET[:40] in h.text for h in hits)
    erin = {h.metadata["source"] for h in index.search(REORG_SECRET, k=K, top_n=K, principal=ERIN)}
    assert "hr/reorg-plan.docx" in erin and "hr/salary-bands-2027.pdf" not in erin


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_core_index_never_returns_a_forbidden_chunk(index, first_stage):
    for query in QUERIES:
        hits = index.search(query, k=K, top_n=K, first_stage=first_stage, principal=BOB)
        assert hits and not {h.metadata["source"] for h in hits} & FORBIDDEN_FOR_BOB
        retrieved, _ = index.retrieve_with_vectors(query, K, first_stage=first_stage, principal=BOB)
        assert not {h.metadata["source"] for h in retrieved} & FORBIDDEN_FOR_BOB
        anyone = index.search(query, k=K, top_n=K, first_stage=first_stage, principal=Principal("guest"))
        assert anyone and all(h.metadata["allowed_groups"] == ["*"] for h in anyone)


def test_a_user_filter_cannot_widen_access(index):
    wide = models.Filter(should=[
        models.FieldCondition(key="doc_id", match=models.MatchAny(any=sorted(FORBIDDEN_FOR_BOB))),
        models.IsEmptyCondition(is_empty=models.PayloadField(key="metadata.allowed_groups")),
    ])
    for first_stage in ("dense", "hybrid"):
        assert index.search(SALARY_SECRET, k=K, top_n=K, first_stage=first_stage, filter=wide, principal=BOB) == []


def test_hybrid_puts_the_access_filter_into_every_prefetch(index, monkeypatch):
    seen = []
    original = index.client.query_points
    monkeypatch.setattr(index.client, "query_points", lambda *a, **kw: seen.append(kw) or original(*a, **kw))
    index.search(SALARY_SECRET, k=K, first_stage="hybrid", principal=BOB)
    (call,) = seen
    rule = access_filter(BOB)
    assert len(call["prefetch"]) == 2
    for part in [*call["prefetch"], call]:
        applied = part.filter if isinstance(part, models.Prefetch) else part["query_filter"]
        assert applied == rule or rule in (applied.must or [])


def test_a_search_without_principal_is_refused_once_documents_carry_access_lists(index, model):
    with pytest.raises(AccessError, match="principal="):
        index.search(SALARY_SECRET)
    with pytest.raises(AccessError):
        index.retrieve_with_vectors(SALARY_SECRET, 5, first_stage="hybrid")
    assert index.search(SALARY_SECRET, k=K, top_n=K, principal=Principal.unrestricted_access())  # trusted code
    open_collection = ResRankIndex(model, "open", path=":memory:")
    open_collection.index([Document("a", "no access lists here")])
    assert not open_collection.access_controlled() and open_collection.search("here")
    writer = ResRankIndex.__new__(ResRankIndex)  # another writer on the same Qdrant adds an access list
    writer.__dict__.update(open_collection.__dict__, _layout=None)
    writer.index([Document("b", "restricted here", {"allowed_groups": ["hr"]})])
    with pytest.raises(AccessError):  # the first index never re-read the mark, yet refuses on meeting the list
        open_collection.search("here", k=5)
    with pytest.raises(AccessError):
        open_collection.search("no access lists")
    with pytest.raises(TypeError, match="Principal"):
        index.search("x", principal=["staff"])


def test_chunks_without_access_list_are_hidden_from_principals_and_bad_lists_refused(model):
    store = ResRankIndex(model, "mixed", path=":memory:")
    store.index([Document("open", "the canteen menu"), Document("hr", "the canteen menu", {"allowed_groups": ["hr"]})])
    assert [h.doc_id for h in store.search("canteen", principal=Principal("ann", ["hr"]))] == ["hr"]
    assert store.search("canteen", principal=BOB) == []
    with pytest.raises(ValueError, match="allowed_groups"):
        store.index([Document("bad", "x", {"allowed_groups": [3]})])
    assert store.count(principal=Principal("ann", ["hr"])) == 1 and store.count(principal=BOB) == 0


def test_langchain_retriever_over_the_index_and_over_a_qdrant_store(index, chunks, model):
    from langchain_qdrant import QdrantVectorStore
    from langchain_resrank import ResRankEmbeddings, ResRankRetriever

    for first_stage in ("dense", "hybrid"):
        retriever = ResRankRetriever(index=index, k=K, first_stage=first_stage, principal=BOB)
        for query in QUERIES:
            documents = retriever.invoke(query)
            assert documents and not {d.metadata["source"] for d in documents} & FORBIDDEN_FOR_BOB
        assert FORBIDDEN_FOR_BOB & {d.metadata["source"] for d in retriever.invoke(SALARY_SECRET, principal=ALICE)}
    with pytest.raises(AccessError):
        ResRankRetriever(index=index, k=K).invoke(SALARY_SECRET)

    store = QdrantVectorStore.from_texts(
        [c.text for c in chunks], ResRankEmbeddings(model=model), metadatas=[c.metadata for c in chunks],
        location=":memory:", collection_name="lc-company",
    )
    retriever = ResRankRetriever(vector_store=store, k=K, principal=BOB)
    for query in QUERIES:
        documents = retriever.invoke(query)
        assert documents and not {d.metadata["source"] for d in documents} & FORBIDDEN_FOR_BOB
    assert FORBIDDEN_FOR_BOB & {d.metadata["source"] for d in retriever.invoke(SALARY_SECRET, principal=ALICE)}


async def test_langchain_async_path_applies_the_principal(index):
    from langchain_resrank import ResRankRetriever

    documents = await ResRankRetriever(index=index, k=K).ainvoke(SALARY_SECRET, principal=BOB)
    assert documents and not {d.metadata["source"] for d in documents} & FORBIDDEN_FOR_BOB


def test_llama_index_retriever_over_the_index_and_over_a_qdrant_store(index, chunks, model):
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.resrank import ResRankEmbedding
    from llama_index.retrievers.resrank import ResRankRetriever
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    for first_stage in ("dense", "hybrid"):
        retriever = ResRankRetriever(index, k=K, top_n=K, first_stage=first_stage, principal=BOB)
        for query in QUERIES:
            nodes = retriever.retrieve(query)
            assert nodes and not {doc_of(n.node.node_id) for n in nodes} & FORBIDDEN_FOR_BOB
    with pytest.raises(AccessError):
        ResRankRetriever(index, k=K).retrieve(SALARY_SECRET)

    store = QdrantVectorStore(collection_name="li-company", client=QdrantClient(location=":memory:"))
    nodes = [TextNode(text=c.text, metadata=c.metadata) for c in chunks]
    VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                     embed_model=ResRankEmbedding(model=model))
    retriever = ResRankRetriever(store, model, k=K, top_n=K, principal=BOB)
    for query in QUERIES:
        found = retriever.retrieve(query)
        assert found and not {n.node.metadata["source"] for n in found} & FORBIDDEN_FOR_BOB
    alice = ResRankRetriever(store, model, k=K, top_n=K, principal=ALICE).retrieve(SALARY_SECRET)
    assert FORBIDDEN_FOR_BOB & {n.node.metadata["source"] for n in alice}


class Echo:
    name = "echo"

    def generate(self, system, user):
        return "From the passages [1] and [2]."


@pytest.fixture(scope="module")
def demo_client(index, company):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from demos.docqa.pipeline import DocQA
    from demos.docqa.server import create_app

    qa = DocQA(index, Echo(), k=K, context_passages=3, users=USERS, source_root=company)
    return TestClient(create_app(qa, {"corpus": "northwind", "documents": index.count(), "note": ""}))


def test_demo_api_answers_bob_from_allowed_passages_only(demo_client):
    info = demo_client.get("/api/info").json()
    assert info["access_control"] and info["users"] == sorted(USERS)
    for user in ("bob", None):
        for mode in ("qa", "chat"):
            for query in QUERIES:
                data = demo_client.post("/api/ask", json={"question": query, "mode": mode, "user": user}).json()
                shown = {doc_of(p["id"]) for p in data["passages"] + data["candidates"]}
                assert shown and not shown & FORBIDDEN_FOR_BOB
                texts = json.dumps([p["text"] for p in data["passages"] + data["candidates"]] + [data["answer"]])
                assert SALARY_SECRET[:30] not in texts and REORG_SECRET[:30] not in texts
    alice = demo_client.post("/api/ask", json={"question": SALARY_SECRET, "user": "alice"}).json()
    assert FORBIDDEN_FOR_BOB & {doc_of(c["id"]) for c in alice["candidates"]}
    salary = [c for c in alice["candidates"] if SALARY_SECRET[:30] in c["text"]][0]
    assert salary["label"] == "hr/salary-bands-2027.pdf p. 2" and salary["page"] == 2
    assert salary["url"] == "/api/source/hr/salary-bands-2027.pdf#page=2"
    assert demo_client.post("/api/ask", json={"question": "x", "user": "mallory"}).status_code == 403
    history = [{"role": "user", "content": SALARY_SECRET}, {"role": "assistant", "content": "?"}]
    chat = demo_client.post("/api/ask", json={"question": "and E6?", "mode": "chat", "history": history, "user": "bob"})
    assert not {doc_of(c["id"]) for c in chat.json()["candidates"]} & FORBIDDEN_FOR_BOB


def test_demo_source_links_serve_only_readable_files(demo_client):
    secret = "/api/source/hr/salary-bands-2027.pdf"
    assert demo_client.get(secret, params={"user": "bob"}).status_code == 404
    assert demo_client.get(secret).status_code == 404  # anonymous
    assert demo_client.get(secret, params={"user": "alice"}).content.startswith(b"%PDF")
    assert demo_client.get("/api/source/handbook.md", params={"user": "bob"}).status_code == 200
    assert demo_client.get("/api/source/../users.json", params={"user": "alice"}).status_code == 404
    assert demo_client.get("/api/source/users.json", params={"user": "alice"}).status_code == 404  # not indexed


def test_cli_search_as_a_group(tmp_path, company, model):
    from typer.testing import CliRunner

    from resrank_rag.cli import app

    model.save_pretrained(tmp_path / "model")
    common = ["--collection", "kb", "--path", str(tmp_path / "qdrant"), "--model", str(tmp_path / "model")]
    runner = CliRunner(env={"COLUMNS": "250", "RESRANK_CACHE_DIR": str(tmp_path / "cache")})
    indexed = runner.invoke(app, ["index", str(company), *common, "--chunk-size", "40", "--overlap", "5"])
    assert indexed.exit_code == 0, indexed.output
    refused = runner.invoke(app, ["search", SALARY_SECRET, *common, "--k", "64", "--top-n", "64"])
    assert refused.exit_code != 0 and "--group" in refused.output
    bob = runner.invoke(app, ["search", SALARY_SECRET, *common, "--k", "64", "--top-n", "64", "--group", "staff"])
    assert bob.exit_code == 0, bob.output
    assert "handbook.md" in bob.output and "salary-bands" not in bob.output and "reorg" not in bob.output
    alice = runner.invoke(app, ["search", SALARY_SECRET, *common, "--k", "64", "--top-n", "64", "--group", "hr"])
    assert "salary-bands" in alice.output


def test_resrank_serve_has_no_retrieving_route():
    """`resrank serve` reranks and embeds what the caller sends; it never reads an index, so it has no
    principal to apply. A route that searched an index would have to take one: this test then fails."""
    pytest.importorskip("fastapi")
    from resrank_rag.serve.app import create_app

    model = __import__("resrank_rag.testing", fromlist=["tiny_resrank"]).tiny_resrank()
    paths = {route.path for route in create_app(model).routes if route.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")}
    assert paths <= {"/v2/rerank", "/v1/rerank", "/rerank", "/v1/embeddings", "/embed", "/health", "/info", "/metrics"}
