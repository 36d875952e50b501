"""`resrank search`: retrieve from a Qdrant collection and rerank the stored vectors with ResRank."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from resrank_rag.commands.options import Precision
from resrank_rag.model import DEFAULT_MODEL


def search(
    query: Annotated[str, typer.Argument(help="The query text.")],
    collection: Annotated[str, typer.Option(help="Qdrant collection name.")],
    path: Annotated[str | None, typer.Option(help="Embedded Qdrant folder (default ./.resrank/qdrant).")] = None,
    url: Annotated[str | None, typer.Option(help="Qdrant server URL instead of an embedded folder.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="QDRANT_API_KEY", help="Qdrant server API key.")] = None,
    model: Annotated[str, typer.Option(help="The model the collection was indexed with.")] = DEFAULT_MODEL,
    k: Annotated[int, typer.Option(min=1, help="First-stage candidates to rerank.")] = 100,
    top_n: Annotated[int, typer.Option(min=1, help="Results to show.")] = 10,
    rerank: Annotated[bool, typer.Option("--rerank/--no-rerank", help="Rerank the candidates with ResRank.")] = True,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="Fuse BM25 (Qdrant sparse vectors) with dense retrieval (RRF) as first stage.")] = False,
    group: Annotated[list[str] | None, typer.Option(help="Search as a user in this group (repeat it): only documents it may read.")] = None,
    all_documents: Annotated[bool, typer.Option("--all-documents", help="Ignore access lists (trusted admin use).")] = False,
    precision: Precision = "auto",
) -> None:
    """Search COLLECTION for QUERY: Qdrant top-k, then one ResRank pass over the stored vectors."""
    from resrank_rag import ResRank
    from resrank_rag.index import AccessError, Principal, ResRankIndex

    if group and all_documents:
        raise typer.BadParameter("give --group or --all-documents, not both")
    try:
        principal = Principal("cli", group) if group else Principal.unrestricted_access("cli") if all_documents else None
    except (TypeError, ValueError) as error:
        raise typer.BadParameter(f"{error}; e.g. --group staff --group hr", param_hint="--group") from None

    with ResRankIndex(ResRank.from_pretrained(model, precision=precision), collection, path=path, url=url, api_key=api_key) as store:
        if not store.client.collection_exists(collection):
            raise typer.BadParameter(
                f"collection {collection!r} is empty or missing; run `resrank index PATH --collection {collection}`"
            )
        try:
            hits = store.search(
                query, k=k, top_n=top_n, rerank=rerank, first_stage="hybrid" if hybrid else "dense", principal=principal
            )
        except AccessError as error:
            raise typer.BadParameter(f"{error} (here: --group NAME, or --all-documents)") from None
    table = Table(title=f"{collection}: {query}")
    for column in ("rank", "id", "retrieval", "rerank", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        rerank_score = "" if hit.rerank_score is None else f"{hit.rerank_score:.4f}"
        table.add_row(str(rank), hit.id, f"{hit.retrieval_score:.4f}", rerank_score, hit.text[:200])
    Console().print(table)
