"""With the real packaged model: ResRankRerank over a real VectorStoreIndex on embedded Qdrant
improves or equals the BM25 first-stage order in nDCG@10 on judged queries."""

import json
import uuid
from pathlib import Path

import ir_measures
import pytest
from ir_measures import nDCG
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.embeddings.resrank import ResRankEmbedding
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

NDCG10 = nDCG @ 10
FIXTURE = Path(__file__).parent / "fixtures" / "judged_small.json"


def node_for(doc_id: str, text: str) -> TextNode:
    """A node with a stable Qdrant-compatible id; the corpus id rides in metadata, hidden from the encoder."""
    return TextNode(
        id_=str(uuid.uuid5(uuid.NAMESPACE_URL, doc_id)),
        text=text,
        metadata={"doc_id": doc_id},
        excluded_embed_metadata_keys=["doc_id"],
        excluded_llm_metadata_keys=["doc_id"],
    )


def build_index(model, corpus: dict, cache):
    store = QdrantVectorStore(collection_name="judged", client=QdrantClient(location=":memory:"))
    index = VectorStoreIndex(
        [node_for(d, t) for d, t in corpus.items()],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=ResRankEmbedding(model=model, cache=cache),
        show_progress=len(corpus) > 1000,
    )
    return index, store


def ndcg10(qrels: dict, run: dict) -> float:
    """nDCG@10 (ir-measures) of ``run``: {query id: [(doc id, score), ...]}."""
    qrels_list = [ir_measures.Qrel(q, d, int(r)) for q, docs in qrels.items() for d, r in docs.items()]
    run_list = [ir_measures.ScoredDoc(q, d, float(s)) for q, docs in run.items() for d, s in docs]
    return float(ir_measures.calc_aggregate([NDCG10], qrels_list, run_list)[NDCG10])


def rerank_run(reranker, corpus: dict, queries: dict, first_stage: dict) -> dict:
    """Rerank each query's first-stage list, given as nodes WITHOUT embeddings (vectors come from Qdrant)."""
    run = {}
    for qid, ranked in first_stage.items():
        nodes = [NodeWithScore(node=node_for(d, corpus[d]), score=float(s)) for d, s in ranked]
        reranked = reranker.postprocess_nodes(nodes, query_str=queries[qid])
        assert len(reranked) == len(nodes)
        run[qid] = [(n.node.metadata["doc_id"], n.score) for n in reranked]
    return run


def bm25_run(corpus: dict, queries: dict) -> dict:
    import bm25s
    import Stemmer

    ids, stemmer = list(corpus), Stemmer.Stemmer("english").stemWords
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([corpus[d] for d in ids], stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    run = {}
    for qid, text in queries.items():
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        found, scores = retriever.retrieve(tokens, k=len(ids), show_progress=False)
        run[qid] = [(ids[int(i)], len(ids) - rank) for rank, i in enumerate(found[0])]  # rank-based: no ties
    return run


def test_rerank_improves_or_equals_bm25_and_dense_on_the_shipped_judged_set(packaged_model, count_encodes):
    data = json.loads(FIXTURE.read_text())
    corpus, queries, qrels = data["corpus"], data["queries"], data["qrels"]
    from resrank_rag.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(packaged_model, ":memory:")  # shared: the reranker checks the store's vectors for free
    index, store = build_index(packaged_model, corpus, cache=cache)
    reranker = ResRankRerank(model=packaged_model, top_n=len(corpus), vector_store=store, cache=cache)

    bm25 = bm25_run(corpus, queries)
    dense = {
        qid: [(n.node.metadata["doc_id"], n.score) for n in index.as_retriever(similarity_top_k=len(corpus)).retrieve(q)]
        for qid, q in queries.items()
    }
    counter = count_encodes(packaged_model)
    reranked = rerank_run(reranker, corpus, queries, bm25)
    assert counter.passages == 0  # every passage vector came from Qdrant

    scores = {name: ndcg10(qrels, run) for name, run in [("bm25", bm25), ("dense", dense), ("rerank(bm25)", reranked)]}
    print("nDCG@10 on the shipped judged set:", {k: round(v, 4) for k, v in scores.items()})
    assert scores["rerank(bm25)"] >= scores["bm25"]


@pytest.mark.slow
def test_rerank_of_bm25_top100_on_trec_dl_2020(packaged_model, shared_data):
    """Real VectorStoreIndex over the 5,396 TREC DL 2020 passages; rerank each query's BM25 top-100."""
    folder = shared_data / "trec-dl-2020"
    corpus = {}
    for line in (folder / "corpus.jsonl").open():
        row = json.loads(line)
        corpus[row["_id"]] = (row["title"] + " " + row["text"]).strip()
    queries = {row["_id"]: row["text"] for row in map(json.loads, (folder / "queries.jsonl").open())}
    qrels: dict = {}
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        qid, did, rel = line.split()
        qrels.setdefault(qid, {})[did] = int(rel)
    bm25: dict = {}
    for line in (folder / "runs" / "bm25.test.trec").open():
        qid, _, did, _, score, _ = line.split()
        if qid in qrels:
            bm25.setdefault(qid, []).append((did, float(score)))

    _, store = build_index(packaged_model, corpus, cache=None)  # the user cache: encoded once across runs
    reranker = ResRankRerank(model=packaged_model, top_n=100, vector_store=store, cache=None)
    reranked = rerank_run(reranker, corpus, queries, bm25)
    before, after = ndcg10(qrels, bm25), ndcg10(qrels, reranked)
    print(f"TREC DL 2020 ({len(bm25)} queries) nDCG@10: BM25 {before:.4f} -> ResRankRerank {after:.4f}")
    assert after >= before
