"""Property-based checks (hypothesis): arbitrary unicode never breaks the compressor."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_resrank import ResRankCompressor

from resrank_rag.embedding_cache import EmbeddingCache

text = st.text(alphabet=st.characters(codec=None), max_size=50)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=text, contents=st.lists(text, max_size=10), top_n=st.one_of(st.none(), st.integers(1, 12)))
def test_compressor_returns_scored_copies_of_a_subset(tiny_model, query, contents, top_n):
    documents = [Document(page_content=c, metadata={"n": i}) for i, c in enumerate(contents)]
    compressor = ResRankCompressor(model=tiny_model, cache=EmbeddingCache(tiny_model, ":memory:"), top_n=top_n)
    try:
        ranked = compressor.compress_documents(documents, query)
    except ValueError as error:  # documented: an empty or whitespace query
        assert not query.strip() and contents, error
        return
    expected = len(contents) if top_n is None else min(top_n, len(contents))
    assert len(ranked) == expected
    assert len({d.metadata["n"] for d in ranked}) == expected
    scores = [d.metadata["relevance_score"] for d in ranked]
    assert all(type(s) is float and math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
    assert all("relevance_score" not in d.metadata for d in documents)
