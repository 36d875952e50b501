"""Property-based checks (hypothesis): arbitrary unicode never breaks the postprocessor."""

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.resrank_rerank import ResRankRerank

from resrank_rag.embedding_cache import EmbeddingCache

text = st.text(alphabet=st.characters(codec=None), max_size=50)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=text, contents=st.lists(text, max_size=10), top_n=st.integers(1, 12))
def test_postprocessor_returns_a_scored_subset(tiny, query, contents, top_n):
    nodes = [NodeWithScore(node=TextNode(text=c, id_=f"n{i}"), score=0.5) for i, c in enumerate(contents)]
    reranker = ResRankRerank(model=tiny, top_n=top_n, cache=EmbeddingCache(tiny, ":memory:"))
    try:
        ranked = reranker.postprocess_nodes(nodes, query_str=query)
    except ValueError as error:  # documented: an empty or whitespace query
        assert not query.strip() and contents, error
        return
    expected = min(top_n, len(contents))
    assert len(ranked) == expected and len({n.node.node_id for n in ranked}) == expected
    scores = [n.score for n in ranked]
    assert all(type(s) is float and math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
    json.dumps([n.dict() for n in ranked], default=str)
