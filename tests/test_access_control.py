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
    assert store.count(principal=Principal.unrestricted_access()) == len(chunks) < K  # every search below sees every chunk it may
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
    return TestClient(create_app(qa, {"corpus": "northwind", "note": ""}))


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


# ---------------------------------------------------------------- issue 26: every path, not only search


def test_count_scroll_and_delete_need_a_principal_and_see_only_what_it_may_read(index):
    """Issue 26 (6): count(MatchText) without a principal answered whether forbidden text exists."""
    lisbon = models.Filter(must=[models.FieldCondition(key="text", match=models.MatchText(text="Lisbon office closes"))])
    for read in (lambda: index.count(lisbon), lambda: index.count(), lambda: list(index.scroll(lisbon)),
                 lambda: index.delete(["hr/reorg-plan.docx"])):
        with pytest.raises(AccessError, match="principal="):
            read()
    assert index.count(lisbon, principal=BOB) == 0 and index.count(lisbon, principal=ERIN) > 0
    everything = index.count(principal=Principal.unrestricted_access())
    bob_sees = list(index.scroll(principal=BOB, page_size=3))
    assert len(bob_sees) == index.count(principal=BOB) < everything
    assert bob_sees and not {doc_of(h.id) for h in bob_sees} & FORBIDDEN_FOR_BOB
    assert not list(index.scroll(lisbon, principal=BOB))
    assert index.delete(sorted(FORBIDDEN_FOR_BOB), principal=BOB) == 0  # nothing of it is Bob's to delete
    assert index.count(principal=Principal.unrestricted_access()) == everything


def test_the_llama_index_retriever_refuses_a_store_with_access_lists_without_a_principal(chunks, model):
    """Issue 26 (5): over a QdrantVectorStore whose nodes carry allowed_groups it returned hr chunks."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.resrank import ResRankEmbedding
    from llama_index.retrievers.resrank import ResRankRetriever
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    store = QdrantVectorStore(collection_name="li-open", client=QdrantClient(location=":memory:"))
    VectorStoreIndex([TextNode(text=c.text, metadata=c.metadata) for c in chunks],
                     storage_context=StorageContext.from_defaults(vector_store=store), embed_model=ResRankEmbedding(model=model))
    with pytest.raises(AccessError, match="principal="):
        ResRankRetriever(store, model, k=K, top_n=K).retrieve(SALARY_SECRET)
    found = ResRankRetriever(store, model, k=K, top_n=K, principal=Principal.unrestricted_access()).retrieve(SALARY_SECRET)
    assert FORBIDDEN_FOR_BOB <= {n.node.metadata["source"] for n in found}


async def test_the_llama_index_async_path_refuses_too(chunks, model):
    from llama_index.core.schema import MetadataMode, TextNode
    from llama_index.embeddings.resrank import ResRankEmbedding
    from llama_index.retrievers.resrank import ResRankRetriever
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import AsyncQdrantClient, QdrantClient

    store = QdrantVectorStore(collection_name="li-async", client=QdrantClient(location=":memory:"),
                              aclient=AsyncQdrantClient(location=":memory:"))
    nodes = [TextNode(text=c.text, metadata=c.metadata) for c in chunks]
    vectors = ResRankEmbedding(model=model).get_text_embedding_batch([n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes])
    await store.async_add([n.model_copy(update={"embedding": v}) for n, v in zip(nodes, vectors)])
    with pytest.raises(AccessError):
        await ResRankRetriever(store, model, k=K, top_n=K).aretrieve(SALARY_SECRET)
    found = await ResRankRetriever(store, model, k=K, top_n=K, principal=BOB).aretrieve(SALARY_SECRET)
    assert found and not {n.node.metadata["source"] for n in found} & FORBIDDEN_FOR_BOB


def langchain_view_of(index):
    """The ResRankIndex collection read through langchain-qdrant, as a LangChain app would open it."""
    from langchain_qdrant import QdrantVectorStore
    from langchain_resrank import ResRankEmbeddings

    return QdrantVectorStore(client=index.client, collection_name=index.collection, embedding=ResRankEmbeddings(model=index.model),
                             content_payload_key="text", metadata_payload_key="metadata")


def test_the_langchain_retriever_refuses_a_resrank_collection_read_through_langchain_qdrant(index):
    """Issue 26 (5): reading a ResRankIndex collection (marked access-controlled) through langchain-qdrant
    without a principal returned hr chunks."""
    from langchain_resrank import ResRankRetriever

    store = langchain_view_of(index)
    with pytest.raises(AccessError, match="principal="):
        ResRankRetriever(vector_store=store, k=K).invoke(SALARY_SECRET)
    documents = ResRankRetriever(vector_store=store, k=K, principal=BOB).invoke(SALARY_SECRET)
    assert documents and not {d.metadata["source"] for d in documents} & FORBIDDEN_FOR_BOB
    alice = ResRankRetriever(vector_store=store, k=K).invoke(SALARY_SECRET, principal=ALICE)
    assert FORBIDDEN_FOR_BOB & {d.metadata["source"] for d in alice}


def test_cli_search_with_an_empty_group_is_a_usage_error(tmp_path):
    """Issue 26 (15): `resrank search ... --group ''` printed a traceback."""
    from typer.testing import CliRunner

    from resrank_rag.cli import app

    result = CliRunner().invoke(app, ["search", "q", "--collection", "kb", "--path", str(tmp_path), "--group", ""])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Invalid value for --group" in result.output and "non-empty" in result.output


@pytest.fixture(scope="module")
def forged_demo(tmp_path_factory, model):
    """The company folder plus a public wiki.jsonl whose rows claim restricted files as their source and
    path (or id), an HR file with a telling name that is empty, and an HR file the index does not read."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from demos.docqa.app import DemoSettings, build
    from demos.docqa.server import create_app

    folder = make_company_folder(tmp_path_factory.mktemp("forged"), broken=False)
    (folder / "hr" / "salary-bands.txt").write_text("Salary bands, confidential. " + SALARY_SECRET)
    (folder / "hr" / "layoffs-lisbon-2027-names.txt").write_text("")
    (folder / "hr" / "passwords.csv").write_text("admin,hunter2\n")
    rows = [
        {"id": "wiki-1", "text": "The canteen opens at noon and serves soup.",
         "metadata": {"source": "hr/salary-bands.txt", "path": "hr/salary-bands.txt"}},
        {"id": "hr/passwords.csv", "text": "The canteen also sells coffee."},
        {"id": "wiki-hr", "text": "Canteen staff get HR bonuses.", "allowed_groups": ["hr"]},
    ]
    (folder / "wiki.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    settings = DemoSettings(docs=folder, users=folder / "users.json", index_path=":memory:", k=K)
    qa, info = build(settings, model=model, generator=Echo())
    return TestClient(create_app(qa, info))


def test_demo_source_decides_on_the_files_own_path_never_on_a_metadata_field(forged_demo):
    """Issue 26 (1): a public JSONL row with "source": "hr/salary-bands.txt" made /api/source serve it to bob."""
    for user in ("bob", None):
        params = {"user": user} if user else {}
        assert forged_demo.get("/api/source/hr/salary-bands.txt", params=params).status_code == 404
        answer = forged_demo.post("/api/ask", json={"question": "When does the canteen open?", "user": user}).json()
        urls = {c["url"] for c in answer["passages"] + answer["candidates"]}
        assert not {u for u in urls if u and "hr/" in u}, urls
        assert forged_demo.get("/api/source/wiki.jsonl", params=params).status_code == 404  # a row is hr-only
    assert forged_demo.get("/api/source/hr/salary-bands.txt", params={"user": "alice"}).content.startswith(b"Salary")
    assert forged_demo.get("/api/source/wiki.jsonl", params={"user": "alice"}).status_code == 200
    for user in ("alice", "bob"):  # a row's id is no file: passwords.csv was never indexed
        assert forged_demo.get("/api/source/hr/passwords.csv", params={"user": user}).status_code == 404


def test_demo_info_shows_each_user_only_their_own_view(forged_demo):
    """Issue 26 (7): /api/info gave anonymous callers the corpus-wide chunk count and problems naming hr files."""
    views = {user: forged_demo.get("/api/info", params={"user": user} if user else {}).json()
             for user in (None, "bob", "alice")}
    assert views[None]["documents"] <= views["bob"]["documents"] < views["alice"]["documents"]
    for user in (None, "bob"):
        assert "layoffs" not in json.dumps(views[user])
    assert any("hr/layoffs-lisbon-2027-names.txt: empty" in p for p in views["alice"]["problems"])
    assert forged_demo.get("/api/info", params={"user": "mallory"}).status_code == 403
