"""`resrank index`: read documents (.txt .md .jsonl .pdf .docx .html), chunk them, index or sync them into Qdrant."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Annotated

import typer

from resrank_rag.documents import DEFAULT_CHUNK_WORDS, DEFAULT_OVERLAP_WORDS
from resrank_rag.model import DEFAULT_MODEL


def index(
    source: Annotated[Path, typer.Argument(exists=True, help="A folder of .txt/.md/.jsonl/.pdf/.docx/.html files, or one such file.")],
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
    allowed_group: Annotated[
        list[str] | None,
        typer.Option(help="Access list of documents that get none from a sidecar or JSONL field (repeat it; '*': everyone)."),
    ] = None,
) -> None:
    """Index SOURCE into COLLECTION. Re-running skips unchanged documents; ids of chunks are <doc-id>#<n>.

    A changed document is re-chunked and its chunks that are gone are removed; --sync also removes the
    documents that SOURCE no longer holds. Safe to interrupt: run it again to finish. A file that cannot be
    read (encrypted, corrupt) is reported and skipped, and a summary ends the run. Access lists
    (allowed_groups) come from sidecar files, JSONL fields or --allowed-group: see docs/security.md.
    """
    from resrank_rag import ResRank
    from resrank_rag.documents import SUFFIXES, ReadReport, read_documents
    from resrank_rag.embedding_cache import EmbeddingCache
    from resrank_rag.index import Principal, ResRankIndex

    if overlap >= chunk_size:
        raise typer.BadParameter("--overlap must be smaller than --chunk-size")
    from tqdm.auto import tqdm

    report = ReadReport(echo=lambda message: tqdm.write(message, file=sys.stderr))
    try:
        documents = read_documents(source, report, allowed_groups=allowed_group, progress=True)
        first = next(documents, None)
    except (ValueError, ImportError) as error:
        raise typer.BadParameter(str(error)) from None
    nothing = f"{source} holds no readable documents ({' '.join(SUFFIXES)})"
    if first is None and not report.unread:
        typer.echo(report.summary(), err=True)
        raise typer.BadParameter(nothing)
    documents = itertools.chain([first] if first is not None else [], documents)
    ranker = ResRank.from_pretrained(model)
    embedding_cache = EmbeddingCache(ranker) if cache else None
    with ResRankIndex(ranker, collection, path=path, url=url, api_key=api_key, embedding_cache=embedding_cache) as store:
        options = dict(
            batch_size=batch_size, show_progress_bar=not source.is_dir(), chunk_size=chunk_size, overlap=overlap
        )
        # Files unreadable this time keep what was indexed of them, under the access list that governs them now:
        # that list applies even when nothing else could be read.
        try:
            if sync:
                result = store.sync(documents, keep=report.unread, **options)
            else:
                result = store.index(documents, keep=report.unread, **options)
        except (ValueError, ImportError) as error:
            typer.echo(report.summary(), err=True)
            raise typer.BadParameter(nothing if first is None else str(error)) from None
        typer.echo(report.summary(), err=True)
        if first is None and not sync and not result:
            raise typer.BadParameter(nothing)
        points = store.count(principal=Principal.unrestricted_access("resrank index"))  # whoever indexes reads it all
        if not sync:
            typer.echo(f"{result} chunks encoded or updated; collection {collection!r} holds {points} points")
            return
        typer.echo(
            f"{result.documents} documents in {result.chunks} chunks, {result.written} encoded or updated, "
            f"{result.removed} removed; collection {collection!r} holds {points} points"
        )
