"""Real data: SciFact through an embedded ResRankIndex matches the evaluation harness."""

import numpy as np
import pytest

from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation import first_stage
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.metrics import quality
from resrank_rag.evaluation.rerankers import ResRankReranker
from resrank_rag.index import Document, ResRankIndex

REFERENCE_DENSE_NDCG10 = 0.645  # all-MiniLM-L6-v2 on SciFact test, ../shared/data/README.md


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 300 reranks of 100 candidates: minutes on 2 free cores, far more on a shared machine
def test_scifact_search_reproduces_dense_and_harness_rerank(shared_data, packaged_model, tmp_path):
    dataset = load_beir(shared_data / "scifact", "test")
    cache = EmbeddingCache(packaged_model)  # shared user cache: the corpus is encoded once, ever
    index = ResRankIndex(packaged_model, "scifact", path=str(tmp_path), embedding_cache=cache)
    index.index([Document(doc_id, text) for doc_id, text in dataset.corpus.items()], show_progress_bar=True)
    assert index.count() == len(dataset.corpus) == 5183

    encoded_before = cache.encoded_count
    passages_encoded = []
    encode = packaged_model.encode
    packaged_model.encode = lambda texts, *a, **kw: passages_encoded.append(len(texts)) or encode(texts, *a, **kw)
    try:
        plain = {q: index.search(text, k=100, top_n=100, rerank=False) for q, text in dataset.queries.items()}
        reranked = {q: index.search(text, k=100, top_n=100) for q, text in dataset.queries.items()}
    finally:
        del packaged_model.encode
    assert sum(passages_encoded) == 0 and cache.encoded_count == encoded_before

    dense_run = {q: [(h.id, h.retrieval_score) for h in hits] for q, hits in plain.items()}
    rerank_run = {q: [(h.id, h.rerank_score) for h in hits] for q, hits in reranked.items()}
    dense_ndcg = quality(dataset.qrels, dense_run)["nDCG@10"]
    assert dense_ndcg == pytest.approx(REFERENCE_DENSE_NDCG10, abs=0.005)

    harness_vectors = first_stage.corpus_vectors(cache, dataset, show_progress_bar=False)
    harness_dense = first_stage.dense(packaged_model, dataset, harness_vectors, k=100)
    assert dense_ndcg == pytest.approx(quality(dataset.qrels, harness_dense)["nDCG@10"], abs=1e-4)
    # Zero residual heads plus a rank prior over the dense order itself: a monotone change, the same order.
    assert quality(dataset.qrels, rerank_run)["nDCG@10"] == pytest.approx(dense_ndcg, abs=1e-4)

    # The harness's ResRank reranker over the same candidates and checkpoint gives the same ranking and scores.
    harness = ResRankReranker(packaged_model)
    for qid in list(dataset.queries)[:30]:
        ids = [doc for doc, _ in dense_run[qid]]
        stored = np.stack([harness_vectors[d] for d in ids])
        expected = dict(zip(ids, harness.rerank(dataset.queries[qid], [dataset.corpus[d] for d in ids], stored).scores))
        assert [doc for doc, _ in rerank_run[qid][:10]] == sorted(ids, key=lambda d: -expected[d])[:10]
        ours = rerank_run[qid]
        np.testing.assert_allclose([s for _, s in ours], [expected[d] for d, _ in ours], atol=1e-5)
