"""resrank-rag: ResRank one-token-per-passage listwise reranking for RAG."""

from resrank_rag.config import ResRankConfig
from resrank_rag.model import DEFAULT_MODEL, ResRank
from resrank_rag.results import RerankResult

__all__ = ["DEFAULT_MODEL", "RerankResult", "ResRank", "ResRankConfig"]
__version__ = "0.1.0"
