"""`resrank index`: read .txt/.md/.jsonl documents, chunk them, and index or sync them into a Qdrant collection."""

from __future__ import annotations

import itertools
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
    sync: Annotated[
        bool, typer.Option("--sync", help="Make the collection equal SOURCE: also remove documents no longer there.")
    ] = False,
) -> None:
    """Index SOURCE into COLLECTION. Re-running skips unchanged documents; ids of chunks are <doc-id>#<n>.

    A changed document is re-chunked and its chunks that are gone are removed; --sync also removes the
    documents that SOURCE no longer holds. Safe to interrupt: run it again to finish.
    """
    from resrank_rag import ResRank
    from resrank_rag.documents import read_documents
    from resrank_rag.embedding_cache import EmbeddingCache
    from resrank_rag.index import ResRankIndex

    if overlap >= chunk_size:
        raise typer.BadParameter("--overlap must be smaller than --chunk-size")
    documents = read_documents(source)
    try:
        first = next(documents, None)
    except (ValueError, UnicodeDecodeError) as error:
        raise typer.BadParameter(str(error)) from None
    if first is None:
        raise typer.BadParameter(f"{source} holds no .txt, .md or .jsonl documents")
    ranker = ResRank.from_pretrained(model)
    embedding_cache = EmbeddingCache(ranker) if cache else None
    with ResRankIndex(ranker, collection, path=path, url=url, api_key=api_key, embedding_cache=embedding_cache) as store:
        write = store.sync if sync else store.index
        try:
            report = write(
                itertools.chain([first], documents), batch_size=batch_size, show_progress_bar=True,
                chunk_size=chunk_size, overlap=overlap,
            )
        except (ValueError, UnicodeDecodeError) as error:
            raise typer.BadParameter(str(error)) from None
        if not sync:
            typer.echo(f"{report} chunks encoded or updated; collection {collection!r} holds {store.count()} points")
            return
        typer.echo(
            f"{report.documents} documents in {report.chunks} chunks, {report.written} encoded or updated, "
            f"{report.removed} removed; collection {collection!r} holds {store.count()} points"
        )
