"""``resrank adapt``: tune the reranker to one collection's documents in minutes on a CPU, with no re-indexing.

The encoder stays frozen, so the vectors Qdrant holds stay valid; training reads them back from the
collection, in the order its own first stage returns them (docs/adapt.md).
"""

from resrank_rag.adapt.queries import LabelledQuery, read_queries
from resrank_rag.adapt.run import EMA_DECAY, MIN_QUERIES, AdaptResult, adapt, default_stages
from resrank_rag.adapt.synthetic import KINDS as SYNTHETIC_KINDS

__all__ = ["EMA_DECAY", "MIN_QUERIES", "SYNTHETIC_KINDS", "AdaptResult", "LabelledQuery", "adapt", "default_stages", "read_queries"]
