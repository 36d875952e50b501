"""Command-line options shared by the commands that load a model."""

from __future__ import annotations

from typing import Annotated

import typer

from resrank_rag.precision import PRECISIONS, check_precision


def _checked(value: str | None) -> str | None:
    try:
        return value if value is None else check_precision(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


PRECISION_HELP = (
    f"Reranker LM precision: {', '.join(PRECISIONS)}. auto: the fastest one measured to keep the ranking "
    "on this hardware (docs/precision.md)."
)
Precision = Annotated[str, typer.Option(help=PRECISION_HELP, callback=_checked)]
