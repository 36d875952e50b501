"""Reproduce the reference figures of ../shared/data/README.md and the shipped checkpoint's (slow: real data, real model)."""

from pathlib import Path

import pytest

from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.harness import evaluate
from resrank_rag.evaluation.rerankers import DenseReranker, ResRankReranker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.slow


def dataset(name):
    if not (DATA / name).exists():
        pytest.skip(f"{DATA / name} is absent: the reference data lives in ../shared/data next to the repository")
    return load_beir(DATA / name, "test")


@pytest.fixture(scope="module")
def model():
    from resrank_rag import ResRank

    return ResRank.from_pretrained("resrank-minilm-smollm2", precision="fp32")  # the reference figures are fp32's


def ndcg(report):
    return {row.method: row.metrics["nDCG@10"] for row in report.results}


def test_trec_dl_2020_bm25_and_dense_rerank(model):
    report = evaluate(model, dataset("trec-dl-2020"), "test", "shipped", [DenseReranker(model), ResRankReranker(model)])
    got = ndcg(report)
    assert got["shipped"] == pytest.approx(0.480, abs=0.01)
    assert got["shipped + dense"] == pytest.approx(0.608, abs=0.01)
    assert got["shipped + resrank"] == pytest.approx(0.6232, abs=0.002)  # the shipped checkpoint (MODEL_CARD.md)
    assert got["shipped + resrank"] > got["shipped + dense"]


def test_scifact_bm25_dense_and_fusion(model):
    report = evaluate(model, dataset("scifact"), "test", "hybrid", [], extra_first_stages=("bm25", "dense"))
    got = ndcg(report)
    assert got["bm25"] == pytest.approx(0.662, abs=0.01)
    assert got["dense"] == pytest.approx(0.645, abs=0.01)
    assert got["hybrid"] == pytest.approx(0.690, abs=0.01)
