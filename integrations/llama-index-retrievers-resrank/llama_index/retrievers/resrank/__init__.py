from llama_index.retrievers.resrank.base import ResRankRetriever

__all__ = ["ResRankRetriever"]
