from llama_index.embeddings.resrank.base import ResRankEmbedding

__all__ = ["ResRankEmbedding"]
