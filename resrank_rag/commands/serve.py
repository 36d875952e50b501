"""`resrank serve`: the reranking and embedding service (Cohere, TEI and OpenAI APIs; docs/serving.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from resrank_rag.commands.options import Precision
from resrank_rag.model import DEFAULT_MODEL


def serve(
    model: Annotated[str, typer.Option(help="Checkpoint folder, packaged name or Hugging Face id.")] = DEFAULT_MODEL,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes, each holding its own model.")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads per worker (default: all cores; with several workers use cores / workers).")] = None,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda (default: cpu).")] = None,
    precision: Precision = "auto",
    max_batch: Annotated[int, typer.Option(min=1, help="Most requests grouped into one forward (1: no batching).")] = 32,
    max_batch_tokens: Annotated[int | None, typer.Option(min=1, help="Most reranker positions in one padded forward (default: 512 on a CPU, 16384 on a GPU).")] = None,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for company before a forward starts.")] = 2.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests waiting; beyond it, 503 with Retry-After.")] = 256,
    max_candidates: Annotated[int, typer.Option(min=1, help="Most documents (or embedding inputs) per request.")] = 1000,
    max_chars: Annotated[int, typer.Option(min=1, help="Most characters of text per request.")] = 2_000_000,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body in MiB.")] = 64.0,
    api_key: Annotated[str | None, typer.Option(envvar="RESRANK_API_KEY", help="Require 'Authorization: Bearer KEY' (or set $RESRANK_API_KEY).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve ResRank over HTTP: POST /v2/rerank (Cohere), /rerank and /embed (TEI), /v1/embeddings (OpenAI)."""
    try:
        from resrank_rag.serve import server
        from resrank_rag.serve.settings import ServeSettings
    except ImportError as error:
        raise typer.BadParameter(f"serving needs its extra dependencies ({error}): pip install 'resrank-rag[serve]'") from None
    try:
        settings = ServeSettings(
            model=model, device=device, precision=precision, threads=threads, host=host, port=port, workers=workers, api_key=api_key,
            max_batch=max_batch, max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, max_queue=max_queue,
            max_candidates=max_candidates, max_chars=max_chars, max_body_mb=max_body_mb,
        )
        server.check_port(host, port)
    except (ValueError, OSError) as error:
        raise typer.BadParameter(str(error)) from None
    server.run(settings, log_level=log_level)
