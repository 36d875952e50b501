"""ResRankRetriever over QdrantVectorStore and ResRankIndex; inside ContextualCompressionRetriever and LCEL."""

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_resrank import ResRankCompressor, ResRankRetriever

from resrank_rag.index import Document as IndexDocument
from resrank_rag.index import ResRankIndex

QUERY = "what pumps blood?"


def test_reranks_the_first_stage_k_to_top_n(tiny_model, tiny_store, memory_cache, count_passage_encodes):
    retriever = ResRankRetriever(vector_store=tiny_store, k=5, top_n=2, cache=memory_cache)
    assert retriever.model is tiny_model  # taken from the store's ResRankEmbeddings
    calls = count_passage_encodes(tiny_model)
    found = retriever.invoke(QUERY)
    assert sum(calls) == 0  # passages come from the store's vectors
    candidates = [d.page_content for d in tiny_store.similarity_search(QUERY, k=5)]
    expected = tiny_model.rerank(QUERY, candidates, top_n=2)
    assert [d.page_content for d in found] == [r.text for r in expected]
    assert [d.metadata["relevance_score"] for d in found] == pytest.approx([r.score for r in expected], rel=1e-5)
    assert all(d.metadata["source"].startswith("doc-") for d in found)


def test_k_and_top_n_per_call(tiny_store, memory_cache):
    retriever = ResRankRetriever(vector_store=tiny_store, k=2, cache=memory_cache)
    assert len(retriever.invoke(QUERY)) == 2
    assert len(retriever.invoke(QUERY, k=5)) == 5
    assert len(retriever.invoke(QUERY, k=5, top_n=3)) == 3
    assert len(retriever.invoke(QUERY, k=1, top_n=3)) == 1
    with pytest.raises(ValueError, match="k must be a positive integer"):
        retriever.invoke(QUERY, k=0)
    with pytest.raises(ValueError, match="top_n must be a positive integer"):
        retriever.invoke(QUERY, top_n=0)


async def test_async_matches_sync(tiny_store, memory_cache):
    retriever = ResRankRetriever(vector_store=tiny_store, k=4, top_n=3, cache=memory_cache)
    assert await retriever.ainvoke(QUERY, k=5) == retriever.invoke(QUERY, k=5)


def test_search_kwargs_reach_the_store(tiny_store, memory_cache):
    from qdrant_client import models

    only_doc_3 = models.Filter(
        must=[models.FieldCondition(key="metadata.source", match=models.MatchValue(value="doc-3"))]
    )
    retriever = ResRankRetriever(vector_store=tiny_store, k=5, cache=memory_cache, search_kwargs={"filter": only_doc_3})
    assert [d.metadata["source"] for d in retriever.invoke(QUERY)] == ["doc-3"]


def test_over_the_core_index(tiny_model, count_passage_encodes):
    index = ResRankIndex(tiny_model, "core", path=":memory:")
    texts = ["the heart pumps blood", "pumps move water", "blood carries oxygen", "bread rises", "rust is iron oxide"]
    index.index([IndexDocument(f"d{i}", t, {"n": i}) for i, t in enumerate(texts)])
    retriever = ResRankRetriever(index=index, k=4, top_n=2)
    calls = count_passage_encodes(tiny_model)
    found = retriever.invoke(QUERY)
    assert sum(calls) == 0
    expected = index.search(QUERY, k=4, top_n=2)
    assert [(d.id, d.page_content, d.metadata["relevance_score"]) for d in found] == [
        (h.id, h.text, h.rerank_score) for h in expected
    ]
    assert all(type(d.metadata["relevance_score"]) is float and "n" in d.metadata for d in found)
    assert len(retriever.invoke(QUERY, k=5, top_n=5)) == 5
    hybrid = ResRankRetriever(index=index, k=4, top_n=3, first_stage="hybrid").invoke("bread")
    assert [d.id for d in hybrid] == [h.id for h in index.search("bread", k=4, top_n=3, first_stage="hybrid")]


def test_needs_exactly_one_source(tiny_model, tiny_store):
    with pytest.raises(ValueError, match="exactly one"):
        ResRankRetriever(model=tiny_model)
    with pytest.raises(ValueError, match="exactly one"):
        ResRankRetriever(vector_store=tiny_store, index=ResRankIndex(tiny_model, "x", path=":memory:"))


def test_inside_contextual_compression_retriever(tiny_model, tiny_store, memory_cache):
    compressor = ResRankCompressor(model=tiny_model, vector_store=tiny_store, cache=memory_cache, top_n=2)
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=tiny_store.as_retriever(search_kwargs={"k": 5})
    )
    found = retriever.invoke(QUERY)
    candidates = [d.page_content for d in tiny_store.similarity_search(QUERY, k=5)]
    assert [d.page_content for d in found] == [r.text for r in tiny_model.rerank(QUERY, candidates, top_n=2)]


def test_in_an_lcel_chain(tiny_store, memory_cache):
    retriever = ResRankRetriever(vector_store=tiny_store, k=5, top_n=2, cache=memory_cache)
    prompt = ChatPromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")
    echo_model = RunnableLambda(lambda prompt_value: prompt_value.to_string())  # stands in for a chat model
    chain = (
        {
            "context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | echo_model
        | StrOutputParser()
    )
    answer = chain.invoke(QUERY)
    top = [d.page_content for d in retriever.invoke(QUERY)]
    assert answer == f"Human: Context:\n{top[0]}\n{top[1]}\n\nQuestion: {QUERY}"


# ---------------------------------------------------------------- filters, k and one encode on both sources


def count_encodes(model, monkeypatch):
    counts = {"passages": 0, "queries": 0}
    encode, encode_queries = model.encode, model.encode_queries
    monkeypatch.setattr(model, "encode", lambda t, *a, **kw: counts.__setitem__("passages", counts["passages"] + len(t))
                        or encode(t, *a, **kw))
    monkeypatch.setattr(model, "encode_queries", lambda t, *a, **kw: counts.__setitem__("queries", counts["queries"]
                        + len(t)) or encode_queries(t, *a, **kw))
    return counts


def core_index(model):
    index = ResRankIndex(model, "core", path=":memory:")
    texts = ["the heart pumps blood", "pumps move water", "blood carries oxygen", "bread rises", "rust is iron oxide"]
    index.index([IndexDocument(f"d{i}", t, {"source": f"doc-{i}"}) for i, t in enumerate(texts)])
    return index


def only(source):
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="metadata.source", match=models.MatchValue(value=source))])


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_search_kwargs_filter_and_k_reach_the_core_index(tiny_model, monkeypatch, first_stage):
    index = core_index(tiny_model)
    retriever = ResRankRetriever(index=index, first_stage=first_stage, search_kwargs={"filter": only("doc-3")})
    counts = count_encodes(tiny_model, monkeypatch)
    assert [d.metadata["source"] for d in retriever.invoke(QUERY)] == ["doc-3"]
    assert counts == {"passages": 0, "queries": 1}
    assert len(ResRankRetriever(index=index, search_kwargs={"k": 2}).invoke(QUERY)) == 2


def test_the_store_path_encodes_once_and_makes_one_qdrant_call(tiny_model, tiny_store, memory_cache, monkeypatch):
    retriever = ResRankRetriever(vector_store=tiny_store, cache=memory_cache, search_kwargs={"k": 5})
    calls = []
    for name in ("query_points", "retrieve", "scroll", "query_batch_points"):
        original = getattr(tiny_store.client, name)
        monkeypatch.setattr(tiny_store.client, name, lambda *a, _o=original, _n=name, **kw: calls.append(_n) or _o(*a, **kw))
    counts = count_encodes(tiny_model, monkeypatch)
    found = retriever.invoke(QUERY)
    assert calls == ["query_points"] and counts == {"passages": 0, "queries": 1}
    expected = tiny_model.rerank(QUERY, [d.page_content for d in tiny_store.similarity_search(QUERY, k=5)])
    assert [d.page_content for d in found] == [r.text for r in expected]
    assert all(d.metadata["_collection_name"] == "tiny" and "_id" in d.metadata for d in found)
    filtered = ResRankRetriever(vector_store=tiny_store, cache=memory_cache, search_kwargs={"filter": only("doc-2")})
    assert [d.metadata["source"] for d in filtered.invoke(QUERY)] == ["doc-2"]


def test_search_kwargs_that_cannot_apply_are_refused(tiny_model, tiny_store, memory_cache):
    index = core_index(tiny_model)
    with pytest.raises(TypeError, match="qdrant_client.models.Filter"):
        ResRankRetriever(index=index, search_kwargs={"filter": {"source": "doc-3"}})
    with pytest.raises(TypeError, match="qdrant_client.models.Filter"):
        ResRankRetriever(vector_store=tiny_store, cache=memory_cache, search_kwargs={"filter": "source == doc-3"})
    with pytest.raises(ValueError, match=r"\['score_threshold'\] cannot apply with index="):
        ResRankRetriever(index=index, search_kwargs={"score_threshold": 0.5})
    with pytest.raises(ValueError, match=r"\['fetch_k'\] cannot apply with vector_store="):
        ResRankRetriever(vector_store=tiny_store, cache=memory_cache, search_kwargs={"fetch_k": 20})
    from qdrant_client import models

    bare = models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value="doc-3"))])
    with pytest.raises(ValueError, match="'metadata.source'"):
        ResRankRetriever(index=index, search_kwargs={"filter": bare})
    with pytest.raises(ValueError, match="disagree"):
        ResRankRetriever(index=index, k=3, search_kwargs={"k": 4})
