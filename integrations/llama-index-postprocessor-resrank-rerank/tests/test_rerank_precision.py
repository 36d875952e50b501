"""ResRankRerank passes ``precision`` through to ResRank.from_pretrained."""

import pytest
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index.postprocessor.resrank_rerank import ResRankRerank
from resrank_rag.testing import tiny_resrank


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    tiny_resrank().save_pretrained(folder)
    return str(folder)


def test_precision_is_a_field_that_reaches_the_loaded_model(checkpoint):
    rerank = ResRankRerank(model_name=checkpoint, precision="bf16", cache=":memory:", top_n=2)
    assert rerank.precision == "bf16" and rerank.model.precision == "bf16"
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in ("cats purr", "dogs bark", "fish swim")]
    out = rerank.postprocess_nodes(nodes, query_str="cats")
    assert len(out) == 2 and all(type(n.score) is float for n in out)


def test_precision_with_a_loaded_model_is_refused():
    with pytest.raises(ValueError, match="precision only applies when loading by model_name"):
        ResRankRerank(model=tiny_resrank(), precision="int8")
