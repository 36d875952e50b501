"""The `resrank` command line: each subcommand lives in resrank_rag/commands/."""

import typer

from resrank_rag.commands import rerank

app = typer.Typer(help="ResRank: one-token-per-passage listwise reranking for RAG.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """ResRank: one-token-per-passage listwise reranking for RAG."""


app.command("rerank")(rerank.rerank)

if __name__ == "__main__":
    app()
