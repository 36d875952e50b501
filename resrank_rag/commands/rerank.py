"""`resrank rerank`: rank a JSONL file of candidates for one query."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from resrank_rag.commands.options import Precision
from resrank_rag.jsonl import read_jsonl
from resrank_rag.model import DEFAULT_MODEL


class OutputFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"


def read_candidates(path: Path, text_field: str) -> list[dict]:
    """JSONL lines that are strings or objects with a text field (and optionally a 'vector')."""
    rows = []
    try:
        for number, item in read_jsonl(path):
            if isinstance(item, str):
                item = {text_field: item}
            if not isinstance(item, dict) or not isinstance(item.get(text_field), str):
                raise typer.BadParameter(f"{path}:{number} needs a string field {text_field!r}")
            rows.append(item)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return rows


def rerank(
    query: Annotated[str, typer.Argument(help="The query text.")],
    candidates: Annotated[Path, typer.Option("--candidates", "-c", exists=True, dir_okay=False, help="JSONL: one string or object per line.")],
    model: Annotated[str, typer.Option(help="Checkpoint folder, packaged name or Hugging Face id.")] = DEFAULT_MODEL,
    top_n: Annotated[int | None, typer.Option(min=1, help="Keep the best N.")] = None,
    text_field: Annotated[str, typer.Option(help="Field holding the passage text.")] = "text",
    output_format: Annotated[OutputFormat, typer.Option("--format", help="rich table or JSONL on stdout.")] = OutputFormat.table,
    precision: Precision = "auto",
) -> None:
    """Rerank the candidates in a JSONL file for QUERY in one forward pass.

    Objects with a 'vector' field (the passage's stored encoder vector) skip encoding.
    """
    from resrank_rag import ResRank

    rows = read_candidates(candidates, text_field)
    ranker = ResRank.from_pretrained(model, precision=precision)
    texts = [row[text_field] for row in rows]
    has_vectors = bool(rows) and all("vector" in row for row in rows)
    vectors = [row["vector"] for row in rows] if has_vectors else None
    results = ranker.rerank(query, texts, top_n=top_n, vectors=vectors)
    if output_format is OutputFormat.jsonl:
        for rank, result in enumerate(results, 1):
            row = {k: v for k, v in rows[result.index].items() if k != "vector"}
            sys.stdout.write(json.dumps({**row, "rank": rank, "index": result.index, "score": result.score}, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"ResRank: {query}")
    for column in ("rank", "index", "score", "text"):
        table.add_column(column, overflow="fold")
    for rank, result in enumerate(results, 1):
        table.add_row(str(rank), str(result.index), f"{result.score:.4f}", texts[result.index][:200])
    Console().print(table)
