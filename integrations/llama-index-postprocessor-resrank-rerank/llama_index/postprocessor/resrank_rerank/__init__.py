from llama_index.postprocessor.resrank_rerank.base import ResRankRerank

__all__ = ["ResRankRerank"]
