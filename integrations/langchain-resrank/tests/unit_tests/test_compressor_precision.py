"""ResRankCompressor passes ``precision`` through to ResRank.from_pretrained."""

import pytest
from langchain_core.documents import Document

from langchain_resrank import ResRankCompressor
from resrank_rag import ResRank
from resrank_rag.testing import tiny_resrank


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    tiny_resrank().save_pretrained(folder)
    return str(folder)


def test_precision_reaches_the_loaded_model(checkpoint, memory_cache):
    compressor = ResRankCompressor(model_name=checkpoint, precision="int8")
    assert compressor.model.precision == "int8"
    docs = compressor.compress_documents([Document(page_content="cats purr"), Document(page_content="dogs bark")], "cats")
    assert all(type(d.metadata["relevance_score"]) is float for d in docs)
    auto = ResRank.from_pretrained(checkpoint, warm_start=False).precision  # what auto picks on this machine
    assert ResRankCompressor(model_name=checkpoint).model.precision == auto  # None: auto


def test_precision_with_a_loaded_model_is_refused(tiny_model):
    with pytest.raises(ValueError, match="precision only applies when loading by model_name"):
        ResRankCompressor(model=tiny_model, precision="bf16")


def test_a_bad_precision_name_is_a_clear_error(checkpoint):
    with pytest.raises(ValueError, match="precision must be one of"):
        ResRankCompressor(model_name=checkpoint, precision="int4")
