"""LangChain integration for ResRank: embeddings, a document compressor and a retrieve-then-rerank retriever."""

from langchain_resrank.compressor import ResRankCompressor
from langchain_resrank.embeddings import ResRankEmbeddings
from langchain_resrank.retriever import ResRankRetriever

__all__ = ["ResRankCompressor", "ResRankEmbeddings", "ResRankRetriever"]
__version__ = "0.1.0"
