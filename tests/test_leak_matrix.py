"""Issue 26's leak matrix: every principal kind against every path that reads documents.

Principals: none, guest (no groups), member (staff), '*'-only (a principal claiming the group "*"), a
member of the restricted group (hr: the positive control, so the test can fail), and unrestricted.
Paths: ResRankIndex dense, hybrid, retrieve_with_vectors, count, scroll and delete; `resrank search`;
the LlamaIndex retriever and postprocessor over a ResRankIndex and over a plain QdrantVectorStore; the
LangChain retriever and compressor over a ResRankIndex, over it read through langchain-qdrant and over a
plain langchain-qdrant store; the demo's ask, chat, source and info; `resrank serve`.

The corpus is adversarial: a public JSONL row claims a restricted file as its source and path, a public
file holds an hr-only row, a section says "*" inside an hr document, an access list is broken, a
document has no list, a file name is telling. Every restricted document carries a marker word (in its
title too); no marker, id, score, vector or count of a document may reach anyone who may not read it.
The tiny model ranks at random, so every search asks for all chunks (k = K): a forbidden chunk that were
a candidate at all would show up. The expected access is written out below, not taken from the code.
"""

import json

import numpy as np
import pytest
from qdrant_client import models

from resrank_rag.access import AccessError, Principal
from resrank_rag.documents import Document, ReadReport, chunk_document, read_documents
from resrank_rag.index import ResRankIndex, point_id

K = 64
PUBLIC = {"*"}
# document id -> (its access list as the corpus below sets it; None: none; set(): hidden) and its marker word
DOCUMENTS = {
    "public.md": (PUBLIC, "zqpublic"),
    "staff/memo.md": ({"staff"}, "zqstaff"),
    "hr/salary.md": ({"hr"}, "zqsalary"),
    "exec/plan.md": ({"executives"}, "zqexec"),
    "legal/contract.md": (set(), "zqlegal"),  # its folder's access list is broken: hidden from everyone
    "wiki-1": (PUBLIC, "zqwiki"),  # claims hr/salary.md as source and path
    "wiki-hr": ({"hr"}, "zqwikihr"),  # an hr-only row in a public file
    "unlisted": (None, "zqunlisted"),  # no list at all: no principal sees it
    "sectioned": ({"hr"}, "zqsection"),  # one section says "*"
}
MARKERS = {doc: marker for doc, (_, marker) in DOCUMENTS.items()}
QUERY = " ".join(MARKERS.values()) + " salary plan memo"
PRINCIPALS = {
    "none": None,
    "guest": Principal("guest"),
    "member": Principal("sam", ["staff"]),
    "star": Principal("star", ["*"]),
    "hr": Principal("ann", ["hr"]),
    "unrestricted": Principal.unrestricted_access(),
}
DEMO_USERS = {"guest": [], "member": ["staff"], "star": ["*"], "hr": ["hr"]}


def readable(kind: str) -> set[str]:
    """The documents a principal kind may read, by the rule of docs/security.md."""
    principal = PRINCIPALS[kind]
    if principal is None:
        return set()
    if principal.unrestricted:
        return set(DOCUMENTS)
    groups = principal.groups | PUBLIC
    return {doc for doc, (lists, _) in DOCUMENTS.items() if lists is not None and lists & groups}


def doc_of(chunk_id: str) -> str:
    return chunk_id if chunk_id in DOCUMENTS else chunk_id.rsplit("#", 1)[0]


def check(kind: str, docs, returned, where: str, complete: bool = False) -> None:
    """Nothing of a document ``kind`` may not read is among ``docs`` or anywhere in ``returned`` (any JSON)."""
    allowed, docs = readable(kind), {doc_of(d) for d in docs}
    assert docs <= allowed, f"{where}: {kind} got {sorted(docs - allowed)}"
    text = json.dumps(returned, default=str)
    leaked = sorted(m for d, m in MARKERS.items() if d not in allowed and m in text)
    assert not leaked, f"{where}: {kind} saw {leaked}"
    if complete:
        assert docs == allowed, f"{where}: {kind} missed {sorted(allowed - docs)}"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix") / "docs"
    write(root / ".access.json", json.dumps({"allowed_groups": ["*"]}))
    write(root / "public.md", "# zqpublic cafeteria\nSoup on Mondays.")
    write(root / "staff" / ".access.json", json.dumps({"allowed_groups": ["staff"]}))
    write(root / "staff" / "memo.md", "# zqstaff parking memo\nThe car park closes in May.")
    write(root / "hr" / ".access.json", json.dumps({"allowed_groups": ["hr"]}))
    write(root / "hr" / "salary.md", "# zqsalary salary bands\nBand E7 earns 171,000 crowns.")
    write(root / "hr" / "layoffs-zqlayoffs.txt", "")  # empty: a problem whose file name tells
    write(root / "hr" / "passwords.csv", "admin,hunter2\n")  # on disk, never indexed
    write(root / "exec" / "plan.md", "# zqexec plan\nThe Lisbon office closes.")
    write(root / "exec" / "plan.md.access.json", json.dumps({"allowed_groups": ["executives"]}))
    write(root / "legal" / ".access.json", '{"allowed_groups": ["legal"]')  # a typo
    write(root / "legal" / "contract.md", "# zqlegal contract\nThe supplier terms.")
    rows = [
        {"id": "wiki-1", "text": "zqwiki the cafeteria wiki", "metadata": {"source": "hr/salary.md", "path": "hr/salary.md"}},
        {"id": "wiki-hr", "text": "zqwikihr bonus table", "allowed_groups": ["hr"]},
    ]
    write(root / "wiki.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(root / "users.json", json.dumps(DEMO_USERS))
    return root


def api_documents():
    return [
        Document("unlisted", "zqunlisted a note nobody listed"),
        Document.from_sections("sectioned", [
            ("zqsection summary of the report", {"section": "Summary"}),
            ("zqsection salaries of every manager", {"section": "Salaries", "allowed_groups": "*"}),
        ], {"allowed_groups": ["hr"]}),
    ]


@pytest.fixture(scope="module")
def model():
    from resrank_rag.testing import tiny_resrank

    return tiny_resrank()


@pytest.fixture(scope="module")
def documents(folder):
    found = list(read_documents(folder, ReadReport(echo=lambda _: None))) + api_documents()
    assert {d.id for d in found} == set(DOCUMENTS) | {"hr/layoffs-zqlayoffs.txt"}
    return [d for d in found if d.text.strip()]


@pytest.fixture(scope="module")
def chunks(documents):
    return [c for d in documents for c in chunk_document(d, 40, 5)]


@pytest.fixture(scope="module")
def index(model, documents, chunks):
    store = ResRankIndex(model, "matrix", path=":memory:")
    store.index(documents, chunk_size=40, overlap=5)
    assert store.count(principal=PRINCIPALS["unrestricted"]) == len(chunks) < K
    return store


def adversarial_filters(prefix: str) -> dict[str, models.Filter | None]:
    """Filters that try to widen access; ``prefix`` is where metadata lives in the store's payload."""
    key = f"{prefix}allowed_groups"
    listed = [models.FieldCondition(key=key, match=models.MatchAny(any=["hr", "executives", "staff", "legal"]))]
    marker = models.FieldCondition(key=f"{prefix}title" if prefix else "title", match=models.MatchText(text="zqsalary"))
    return {
        "none": None,
        "should is_empty": models.Filter(should=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key)), *listed]),
        "must_not public": models.Filter(must_not=[models.FieldCondition(key=key, match=models.MatchAny(any=["*"]))]),
        "except public": models.Filter(must=[models.FieldCondition(key=key, match=models.MatchExcept(**{"except": ["*"]}))]),
        "min_should": models.Filter(min_should=models.MinShould(conditions=[*listed, marker], min_count=1)),
        "nested": models.Filter(must=[models.Filter(should=[models.Filter(must=listed), models.Filter(must_not=listed)])]),
    }


def stored(index) -> dict[str, tuple[str, np.ndarray]]:
    """point id -> (chunk id, stored vector) of every point (read as trusted code)."""
    points = index.client.scroll(index.collection, limit=1000, with_payload=True, with_vectors=True)[0]
    return {str(p.id): (p.payload["chunk_id"], np.asarray(p.vector[""], dtype=np.float32)) for p in points}


# ---------------------------------------------------------------- ResRankIndex


@pytest.mark.parametrize("kind", PRINCIPALS)
def test_resrank_index_dense_hybrid_vectors_count_and_scroll(index, kind):
    principal = PRINCIPALS[kind]
    forbidden = {pid: vector for pid, (chunk, vector) in stored(index).items() if doc_of(chunk) not in readable(kind)}
    everything = index.count(principal=PRINCIPALS["unrestricted"])
    for name, selector in adversarial_filters("metadata.").items():
        matching = {h.id for h in index.scroll(selector, principal=PRINCIPALS["unrestricted"])}
        expected = {c for c in matching if doc_of(c) in readable(kind)}
        reads = {
            "dense": lambda: index.search(QUERY, k=K, top_n=K, filter=selector, principal=principal),
            "hybrid": lambda: index.search(QUERY, k=K, top_n=K, first_stage="hybrid", filter=selector, principal=principal),
            "vectors": lambda: index.retrieve_with_vectors(QUERY, K, "hybrid", filter=selector, principal=principal),
            "count": lambda: index.count(selector, principal=principal),
            "scroll": lambda: list(index.scroll(selector, principal=principal)),
        }
        for path, read in reads.items():
            where = f"ResRankIndex {path}, filter {name}"
            if principal is None:
                with pytest.raises(AccessError):
                    read()
                continue
            result = read()
            if path == "count":
                assert result == len(expected), where  # a count says no more than the hits would
                continue
            hits, vectors = result if path == "vectors" else (result, None)
            check(kind, [h.doc_id for h in hits], [h.__dict__ for h in hits], where, complete=selector is None)
            assert {h.id for h in hits} == expected, where
            if vectors is not None:
                assert not any(np.allclose(v, f, atol=1e-5) for v in vectors for f in forbidden.values()), where
    assert index.count(principal=PRINCIPALS["unrestricted"]) == everything


@pytest.mark.parametrize("kind", PRINCIPALS)
def test_resrank_index_delete_removes_only_what_the_principal_may_read(model, documents, chunks, kind):
    store = ResRankIndex(model, f"delete-{kind}", path=":memory:")
    store.index(documents, chunk_size=40, overlap=5)
    principal, trusted = PRINCIPALS[kind], PRINCIPALS["unrestricted"]
    before = {h.doc_id for h in store.scroll(principal=trusted)}
    if principal is None:
        with pytest.raises(AccessError):
            store.delete(sorted(DOCUMENTS))
        assert {h.doc_id for h in store.scroll(principal=trusted)} == before
        return
    removed = store.delete(sorted(DOCUMENTS), principal=principal)
    left = {h.doc_id for h in store.scroll(principal=trusted)}
    assert left == before - readable(kind)  # exactly what it may read went; the rest is untouched
    assert removed == sum(doc_of(c.id) in readable(kind) for c in chunks)


# ---------------------------------------------------------------- resrank search


def test_resrank_search(folder, model, tmp_path):
    from typer.testing import CliRunner

    from resrank_rag.cli import app

    model.save_pretrained(tmp_path / "model")
    common = ["--collection", "kb", "--path", str(tmp_path / "qdrant"), "--model", str(tmp_path / "model")]
    runner = CliRunner(env={"COLUMNS": "400", "RESRANK_CACHE_DIR": str(tmp_path / "cache")})
    indexed = runner.invoke(app, ["index", str(folder), *common, "--chunk-size", "40", "--overlap", "5", "--sync"])
    assert indexed.exit_code == 0, indexed.output
    flags = {"none": [], "member": ["--group", "staff"], "star": ["--group", "*"], "hr": ["--group", "hr"],
             "unrestricted": ["--all-documents"]}  # a principal without groups cannot be named on the command line
    for kind, flag in flags.items():
        for hybrid in ([], ["--hybrid"]):
            query = "salary plan memo contract"  # no marker: the output repeats the query
            found = runner.invoke(app, ["search", query, *common, "--k", str(K), "--top-n", str(K), *hybrid, *flag])
            if kind == "none":
                assert found.exit_code == 2 and "--group" in found.output
                continue
            assert found.exit_code == 0, found.output
            file_docs = {d for d in readable(kind) if d not in ("unlisted", "sectioned")}  # the CLI indexed the folder
            check(kind, [], found.output, f"resrank search {kind} {hybrid}")
            assert all(MARKERS[d] in found.output for d in file_docs), (kind, found.output)


# ---------------------------------------------------------------- LlamaIndex


@pytest.fixture(scope="module")
def llama_store(model, chunks):
    """A plain LlamaIndex QdrantVectorStore of the same chunks (node metadata carries allowed_groups)."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.resrank import ResRankEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    store = QdrantVectorStore(collection_name="li-matrix", client=QdrantClient(location=":memory:"))
    nodes = [TextNode(id_=point_id(c.id), text=c.text, metadata={**c.metadata, "chunk_id": c.id}) for c in chunks]
    VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=ResRankEmbedding(model=model))
    return store


def node_doc(node) -> str:
    return doc_of(node.node.metadata.get("chunk_id", node.node.node_id))


@pytest.mark.parametrize("kind", PRINCIPALS)
def test_llama_index_retriever_and_postprocessor(index, llama_store, model, kind):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.resrank_rerank import ResRankRerank
    from llama_index.retrievers.resrank import ResRankRetriever

    principal = PRINCIPALS[kind]
    sources = {"ResRankIndex": (index, "metadata.", ("dense", "hybrid")), "QdrantVectorStore": (llama_store, "", ("dense",))}
    for source, (store, prefix, stages) in sources.items():
        for stage in stages:
            for name, selector in adversarial_filters(prefix).items():
                where = f"LlamaIndex retriever over {source} {stage}, filter {name}"
                retriever = ResRankRetriever(store, model, k=K, top_n=K, first_stage=stage, qdrant_filters=selector,
                                             principal=principal, cache=":memory:")
                if principal is None:
                    with pytest.raises(AccessError):
                        retriever.retrieve(QUERY)
                    continue
                found = retriever.retrieve(QUERY)
                returned = [(n.node.node_id, n.node.text, n.node.metadata, n.score, n.node.embedding) for n in found]
                check(kind, [node_doc(n) for n in found], returned, where, complete=selector is None)

    # The postprocessor over the plain store: a node forged with a restricted node's id and no embedding must
    # be scored from its own text, never from the stored vector it cannot read (a similarity oracle).
    vectors = stored_llama(llama_store)
    query = QueryBundle(QUERY)
    for node_id, (chunk, _) in vectors.items():
        forged = [NodeWithScore(node=TextNode(id_=node_id, text="an innocent text"), score=0.0)]
        fresh = [NodeWithScore(node=TextNode(id_="00000000-0000-0000-0000-000000000000", text="an innocent text"), score=0.0)]
        rerank = ResRankRerank(model=model, top_n=1, vector_store=llama_store, principal=principal, cache=":memory:")
        rerank._store_is_ours[llama_store.collection_name] = True  # judged once per store; here: it is ours
        score, own = rerank.postprocess_nodes(forged, query)[0].score, rerank.postprocess_nodes(fresh, query)[0].score
        if doc_of(chunk) in readable(kind):
            assert score != pytest.approx(own, abs=1e-6), f"{kind} may read {chunk}: its stored vector is used"
        else:
            assert score == pytest.approx(own, abs=1e-6), f"postprocessor: {kind} scored with the vector of {chunk}"


def stored_llama(store) -> dict[str, tuple[str, list]]:
    points = store.client.scroll(store.collection_name, limit=1000, with_payload=True, with_vectors=True)[0]
    return {str(p.id): (p.payload["chunk_id"], p.vector) for p in points}


# ---------------------------------------------------------------- LangChain


@pytest.fixture(scope="module")
def langchain_stores(index, model, chunks):
    """The ResRankIndex collection read through langchain-qdrant, and a plain langchain-qdrant store."""
    from langchain_qdrant import QdrantVectorStore
    from langchain_resrank import ResRankEmbeddings

    embeddings = ResRankEmbeddings(model=model)
    view = QdrantVectorStore(client=index.client, collection_name=index.collection, embedding=embeddings,
                             content_payload_key="text", metadata_payload_key="metadata")
    plain = QdrantVectorStore.from_texts(
        [c.text for c in chunks], embeddings, metadatas=[{**c.metadata, "chunk_id": c.id} for c in chunks],
        ids=[point_id(c.id) for c in chunks], location=":memory:", collection_name="lc-matrix",
    )
    return {"ResRankIndex via langchain-qdrant": view, "langchain-qdrant store": plain}


def lc_doc(document, chunks) -> str:
    """The document a LangChain result is of: its chunk id, its doc_id (over a ResRankIndex) or its point's chunk."""
    metadata = document.metadata
    by_point = {point_id(c.id): c.id for c in chunks}
    return doc_of(metadata.get("chunk_id") or metadata.get("doc_id") or by_point[str(metadata["_id"])])


@pytest.mark.parametrize("kind", PRINCIPALS)
async def test_langchain_retriever_and_compressor(index, langchain_stores, model, chunks, kind):
    from langchain_core.documents import Document as LCDocument
    from langchain_resrank import ResRankCompressor, ResRankRetriever

    principal = PRINCIPALS[kind]
    sources = {"ResRankIndex": dict(index=index), **{name: dict(vector_store=s) for name, s in langchain_stores.items()}}
    for source, given in sources.items():
        for name, selector in adversarial_filters("metadata.").items():
            where = f"LangChain retriever over {source}, filter {name}"
            retriever = ResRankRetriever(**given, k=K, search_kwargs={"filter": selector} if selector else {})
            if principal is None:
                with pytest.raises(AccessError):
                    retriever.invoke(QUERY)
                continue
            found = retriever.invoke(QUERY, principal=principal)
            returned = [(d.id, d.page_content, d.metadata) for d in found]
            check(kind, [lc_doc(d, chunks) for d in found], returned, where, complete=selector is None)
        if principal is None:
            with pytest.raises(AccessError):
                await ResRankRetriever(**given, k=K).ainvoke(QUERY)
        else:
            found = await ResRankRetriever(**given, k=K).ainvoke(QUERY, principal=principal)
            check(kind, [lc_doc(d, chunks) for d in found], [(d.page_content, d.metadata) for d in found], f"async {source}", True)

    # The compressor: a document forged with a restricted point's id is scored from its own text.
    for source, store in langchain_stores.items():
        compressor = ResRankCompressor(model=model, vector_store=store, top_n=None, principal=principal)
        points = store.client.scroll(store.collection_name, limit=1000, with_payload=True)[0]
        for point in points:
            chunk = point.payload.get("chunk_id") or point.payload["metadata"]["chunk_id"]
            forged = LCDocument(page_content="an innocent text", metadata={"_id": point.id, "_collection_name": store.collection_name})
            plain = LCDocument(page_content="an innocent text")
            for compress in (compressor.compress_documents, compressor.acompress_documents):
                result = compress([forged, plain], QUERY)
                if hasattr(result, "__await__"):
                    result = await result
                score, own = (d.metadata["relevance_score"] for d in result)
                if doc_of(chunk) in readable(kind):
                    assert score != pytest.approx(own, abs=1e-6), f"{source}: {kind} may read {chunk}"
                else:
                    assert score == pytest.approx(own, abs=1e-6), f"compressor over {source}: {kind} scored with {chunk}"


# ---------------------------------------------------------------- the demo


class EchoPassages:
    """A generator that answers with everything it was given: whatever reached the LLM shows in the answer."""

    name = "echo"

    def generate(self, system, user):
        return user


@pytest.fixture(scope="module")
def demo(folder, model):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from demos.docqa.app import DemoSettings, build
    from demos.docqa.server import create_app

    settings = DemoSettings(docs=folder, users=folder / "users.json", index_path=":memory:", k=K, context_passages=K)
    qa, info = build(settings, model=model, generator=EchoPassages())
    return TestClient(create_app(qa, info)), qa


FILES = {"public.md", "staff/memo.md", "hr/salary.md", "exec/plan.md", "legal/contract.md"}
"""Files that are one document each; wiki.jsonl may be served only to who may read every row of it."""


@pytest.mark.parametrize("kind", ["none", "guest", "member", "star", "hr"])
def test_demo_ask_chat_source_and_info(demo, folder, kind):
    client, qa = demo
    user = None if kind == "none" else kind
    params = {"user": user} if user else {}
    kind = "guest" if kind == "none" else kind  # the demo answers a caller without a user as anonymous: public only
    file_docs = {d for d in readable(kind) if d not in ("unlisted", "sectioned")}
    for mode, history in (("qa", []), ("chat", [{"role": "user", "content": "cafeteria?"}, {"role": "assistant", "content": "soup"}])):
        question = "salary plan memo contract cafeteria bonus"  # no marker: the answer repeats the question
        answer = client.post("/api/ask", json={"question": question, "mode": mode, "history": history, "user": user})
        assert answer.status_code == 200, answer.text
        data = answer.json()
        shown = [c["id"] for c in data["passages"] + data["candidates"]]
        check(kind, shown, data, f"demo {mode}")
        assert {doc_of(c) for c in shown} == file_docs, f"demo {mode}: {kind}"
        assert all(MARKERS[d] in data["answer"] for d in file_docs)  # what the LLM got: all it may read, no more
    for path in (*FILES, "wiki.jsonl", "hr/passwords.csv", "users.json", "hr/layoffs-zqlayoffs.txt", "../users.json"):
        response = client.get(f"/api/source/{path}", params=params)
        may = path in FILES and path in readable(kind) or path == "wiki.jsonl" and {"wiki-1", "wiki-hr"} <= readable(kind)
        assert response.status_code == (200 if may else 404), f"source {path} for {kind}"
    info = client.get("/api/info", params=params).json()
    chunks = [c for c in qa.index.scroll(principal=Principal.unrestricted_access())]
    assert info["documents"] == sum(doc_of(c.doc_id) in readable(kind) for c in chunks)
    check(kind, [], info, "demo info")
    assert ("zqlayoffs" in json.dumps(info)) == ("hr" in {kind})  # the empty hr file's name: hr only
    assert "legal/.access.json" not in json.dumps(info)  # a broken list hides what it governs, from all


# ---------------------------------------------------------------- resrank serve


@pytest.mark.parametrize("kind", PRINCIPALS)
def test_resrank_serve_reads_no_store(model, kind):
    """`resrank serve` reranks and embeds what the caller sends and reads no index: no principal has
    anything there to gain or lose. Its routes are the known ones, and a rerank answer holds only the
    caller's own documents."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from resrank_rag.serve import create_app

    app = create_app(model)
    routes = {r.path for r in app.routes} - {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    assert routes <= {"/v2/rerank", "/v1/rerank", "/rerank", "/v1/embeddings", "/embed", "/health", "/info", "/metrics"}
    sent = ["zqpublic soup", "the cafeteria"]
    with TestClient(app) as client:
        answer = client.post("/v2/rerank", json={"query": QUERY, "documents": sent, "return_documents": True}).json()
    check("guest" if PRINCIPALS[kind] is None else kind, [], answer, "resrank serve")
    assert {r["document"]["text"] for r in answer["results"]} == set(sent)
