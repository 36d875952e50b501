"""ResRankIndex: a Qdrant collection of ResRank passage vectors, searched then reranked in one pass.

The vector Qdrant stores for retrieval is the passage's one-token representation for reranking, so
``search`` reranks the retrieved vectors directly: no passage is encoded at query time. Each point also
holds a BM25 sparse vector (Qdrant applies the IDF), so hybrid search is one Qdrant query with
dense and sparse prefetches fused by reciprocal rank.

One job per module: ``collection`` (client, model record, layout, server checks), ``writing`` (index,
sync, delete), ``search`` (dense, hybrid, rerank, count, scroll), ``sparse`` (the BM25 tokenizer and
weights), ``filters`` (checking a caller's filter), ``points`` (point ids, payload hashes, hits). Who may
read what is ``resrank_rag.access``.
"""

from resrank_rag.access import AccessError, Principal
from resrank_rag.documents import Document
from resrank_rag.index.collection import DEFAULT_PATH, MIN_QDRANT, ModelMismatchError
from resrank_rag.index.filters import check_filter
from resrank_rag.index.points import (
    DENSE, ID_NAMESPACE, PAYLOAD_FIELDS, SPARSE, SearchHit, SyncReport, content_hash, point_id,
)
from resrank_rag.index.search import RRF_CONSTANT, FirstStage, ResRankIndex
from resrank_rag.index.sparse import BM25_B, BM25_K1
from resrank_rag.index.sparse import bm25_vectors as _bm25_vectors  # the names index.py had (benchmarks read it)
from resrank_rag.index.sparse import tokenize as _tokenize

__all__ = [
    "AccessError", "Document", "ModelMismatchError", "Principal", "ResRankIndex", "SearchHit", "SyncReport",
    "check_filter", "content_hash", "point_id",
]
