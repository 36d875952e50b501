"""`resrank index`: read .txt/.md/.jsonl documents, chunk them, and index them into a Qdrant collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resrank_rag.documents import DEFAULT_CHUNK_WORDS, DEFAULT_OVERLAP_WORDS
from resrank_rag.model import DEFAULT_MODEL


def index(
    source: Annotated[Path, typer.Argument(exists=True, help="A folder of .txt/.md/.jsonl files, or one such file.")],
    collection: Annotated[str, typer.Option(help="Qdrant collection name.")],
    path: Annotated[str | None, typer.Option(help="Embedded Qdrant folder (default ./.resrank/qdrant).")] = None,
    url: Annotated[str | None, typer.Option(help="Qdrant server URL instead of an embedded folder.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="QDRANT_API_KEY", help="Qdrant server API key.")] = None,
    model: Annotated[str, typer.Option(help="Checkpoint folder, packaged name or Hugging Face id.")] = DEFAULT_MODEL,
    chunk_size: Annotated[int, typer.Option(min=1, help="Words per chunk of a long document.")] = DEFAULT_CHUNK_WORDS,
    overlap: Annotated[int, typer.Option(min=0, help="Words shared by consecutive chunks.")] = DEFAULT_OVERLAP_WORDS,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents encoded and upserted per batch.")] = 64,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse and keep vectors in the user embedding cache.")] = True,
) -> None:
    """Index SOURCE into COLLECTION. Re-running skips unchanged documents; ids of chunks are <doc-id>#<n>."""
    from resrank_rag import ResRank
    from resrank_rag.documents import load_chunks
    from resrank_rag.embedding_cache import EmbeddingCache
    from resrank_rag.index import ResRankIndex

    if overlap >= chunk_size:
        raise typer.BadParameter("--overlap must be smaller than --chunk-size")
    try:
        documents = load_chunks(source, chunk_size, overlap)
    except (ValueError, UnicodeDecodeError) as error:
        raise typer.BadParameter(str(error)) from None
    if not documents:
        raise typer.BadParameter(f"{source} holds no .txt, .md or .jsonl documents with text")
    ranker = ResRank.from_pretrained(model)
    embedding_cache = EmbeddingCache(ranker) if cache else None
    store = ResRankIndex(ranker, collection, path=path, url=url, api_key=api_key, embedding_cache=embedding_cache)
    written = store.index(documents, batch_size=batch_size, show_progress_bar=True)
    typer.echo(
        f"{len(documents)} chunks read, {written} encoded or updated, {len(documents) - written} unchanged; "
        f"collection {collection!r} holds {store.count()} points"
    )
