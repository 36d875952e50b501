"""`resrank demo`: the document QA + chat web demo on the shipped documents, offline (code in demos/)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from resrank_rag.commands.options import Precision

CHECKOUT = Path(__file__).resolve().parents[2]


def _demo_module(name: str):
    """A module of demos/docqa, importable from a source checkout (demos/ lives beside resrank_rag/)."""
    if not (CHECKOUT / "demos" / "docqa").is_dir():
        raise typer.BadParameter(
            "the demo ships with the source repository, not the wheel: clone resrank-rag and run `make demo`"
        )
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    try:
        return importlib.import_module(f"demos.docqa.{name}")
    except ImportError as error:
        raise typer.BadParameter(f"the demo needs its extra dependencies ({error}): pip install -e '.[demo]'") from None


def demo(
    once: Annotated[str | None, typer.Option("--once", help="Answer this one question in the terminal and exit.")] = None,
    terminal: Annotated[bool, typer.Option("--terminal", help="Ask questions at a terminal prompt instead of the web page.")] = False,
    chat: Annotated[bool, typer.Option("--chat", help="Terminal modes: chat (follow-ups use the history).")] = False,
    docs: Annotated[Path | None, typer.Option(exists=True, help="Folder of .md/.txt/.jsonl/.pdf/.docx/.html documents to index instead of the shipped ones.")] = None,
    users: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="JSON of demo users and their groups, e.g. {\"alice\": [\"hr\"]} (documents with allowed_groups).")] = None,
    user: Annotated[str | None, typer.Option(help="Terminal modes: answer as this demo user (from --users).")] = None,
    data: Annotated[Path | None, typer.Option(exists=True, file_okay=False, help="A BEIR folder with corpus.jsonl, e.g. ../shared/data/scifact.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="With --data: index only the first N passages.")] = None,
    model: Annotated[str, typer.Option(help="ResRank checkpoint folder, packaged name or hub id.")] = "resrank-minilm-smollm2",
    llm: Annotated[str | None, typer.Option(help="Your LLM as 'package.module:attribute' (LlamaIndex/LangChain LLM, callable, or factory). Default: packaged SmolLM2-135M.")] = None,
    k: Annotated[int, typer.Option(min=1, help="First-stage candidates that ResRank reranks.")] = 20,
    context: Annotated[int, typer.Option(min=1, help="Best reranked passages given to the generator.")] = 3,
    first_stage: Annotated[str, typer.Option(help="'hybrid' (dense + BM25 fusion) or 'dense'.")] = "hybrid",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Answer length limit of the packaged generator.")] = 96,
    host: Annotated[str, typer.Option(help="Web page host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Web page port.")] = 8000,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser; just print the URL.")] = False,
    index_path: Annotated[str | None, typer.Option(help="Embedded Qdrant folder (default: the user cache) or ':memory:'.")] = None,
    no_generate: Annotated[bool, typer.Option("--no-generate", help="Answer with the extractive answer only (the passages' best sentences); load no generator.")] = False,
    feedback_db: Annotated[Path | None, typer.Option(dir_okay=False, help="SQLite file of users' 👍/👎 (default: demo/feedback.sqlite in the user cache; in memory with --index-path :memory:).")] = None,
    precision: Precision = "auto",
) -> None:
    """Launch the ResRank document QA + chat demo (web page by default, offline)."""
    if first_stage not in ("hybrid", "dense"):
        raise typer.BadParameter("--first-stage must be 'hybrid' or 'dense'")
    if docs is not None and data is not None:
        raise typer.BadParameter("give --docs or --data, not both")
    web = once is None and not (terminal or chat)
    if web:
        try:  # before the slow model and index loading
            _demo_module("server").check_port(host, port)
        except OSError as error:
            raise typer.BadParameter(str(error), param_hint="--port") from None
    app = _demo_module("app")
    settings = app.DemoSettings(
        docs=docs, data=data, limit=limit, model=model, llm=llm, k=k, context_passages=min(context, k),
        first_stage=first_stage, max_new_tokens=max_new_tokens, index_path=index_path, precision=precision,
        users=users, user=user, generate=not no_generate, feedback_db=feedback_db,
    )
    try:
        qa, info = app.build(settings)
        if user is not None:
            qa.principal(user)  # an unknown user fails now, not at the first question
    except (ValueError, PermissionError) as error:
        raise typer.BadParameter(str(error)) from None
    if once is not None:
        app.print_answer(qa.ask(once, user=user))
    elif terminal or chat:
        app.run_terminal(qa, chat, user)
    else:
        try:
            _demo_module("server").serve(qa, info, host=host, port=port, open_browser=not no_browser)
        except OSError as error:  # the port is busy or cannot be bound
            raise typer.BadParameter(str(error), param_hint="--port") from None
