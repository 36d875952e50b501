"""`resrank serve`: ResRank behind the rerank and embedding APIs that existing clients speak.

Cohere ``POST /v2/rerank``, TEI ``POST /rerank`` and ``POST /embed``, OpenAI ``POST /v1/embeddings``,
with dynamic batching into one ``rerank_batch`` forward. Needs the serve extra: ``pip install 'resrank-rag[serve]'``.
"""

from resrank_rag.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(model, settings: ServeSettings | None = None):
    """The ASGI app around a loaded ResRank (imported lazily: FastAPI is an optional dependency)."""
    from resrank_rag.serve.app import create_app as build

    return build(model, settings)
