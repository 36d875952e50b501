"""What one batch of jobs asks of the model: framework-free, run on the batcher's model thread."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resrank_rag.model import ResRank
from resrank_rag.results import RerankResult


@dataclass(frozen=True)
class RerankJob:
    """One rerank request, already checked: texts and/or stored vectors, an optional query vector."""

    query: str
    texts: list[str] | None
    vectors: np.ndarray | None = None
    query_vector: np.ndarray | None = None
    top_n: int | None = None


def run_batch(model: ResRank, kind: str, payloads: list) -> list:
    """Results for each payload, in order: reranks in one ``rerank_batch`` forward, embeddings in one encode."""
    if kind == "rerank":
        return rerank_jobs(model, payloads)
    if kind in ("passage", "query"):
        return embed_jobs(model, payloads, queries=kind == "query")
    raise ValueError(f"unknown job kind {kind!r}")


def rerank_jobs(model: ResRank, jobs: list[RerankJob]) -> list[list[RerankResult]]:
    """All lists in one padded reranker forward; query vectors given by callers are used, the rest encoded."""
    query_vectors = None
    if any(job.query_vector is not None for job in jobs):
        missing = [i for i, job in enumerate(jobs) if job.query_vector is None]
        encoded = model.encode_queries([jobs[i].query for i in missing]) if missing else None
        query_vectors = np.zeros((len(jobs), model.embedding_dim), np.float32)
        for row, i in enumerate(missing):
            query_vectors[i] = encoded[row]
        for i, job in enumerate(jobs):
            if job.query_vector is not None:
                query_vectors[i] = job.query_vector
    results = model.rerank_batch(
        [job.query for job in jobs],
        [job.texts for job in jobs],
        vectors=[job.vectors for job in jobs],
        query_vectors=query_vectors,
        batch_size=len(jobs),
    )
    return [ranked[: job.top_n] for job, ranked in zip(jobs, results)]


def embed_jobs(model: ResRank, jobs: list[list[str]], queries: bool) -> list[np.ndarray]:
    """Every job's texts in one encoder call, split back per job."""
    texts = [text for job in jobs for text in job]
    vectors = model.encode_queries(texts) if queries else model.encode(texts)
    bounds = np.cumsum([0] + [len(job) for job in jobs])
    return [vectors[bounds[i] : bounds[i + 1]] for i in range(len(jobs))]
