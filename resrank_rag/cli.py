"""The `resrank` command line: each subcommand lives in resrank_rag/commands/."""

try:
    import typer
    import rich  # noqa: F401 - the subcommands print with it
except ImportError as error:  # a plain `pip install resrank-rag` is the library alone
    raise SystemExit(f"the resrank command line needs its extra ({error.name} is missing): pip install 'resrank-rag[cli]'")

from resrank_rag.commands import rerank
from resrank_rag.commands import adapt as adapt_command
from resrank_rag.commands import bench as bench_command
from resrank_rag.commands import eval as eval_command
from resrank_rag.commands import fit_features as fit_features_command
from resrank_rag.commands import index as index_command
from resrank_rag.commands import search as search_command
from resrank_rag.commands import train as train_command
from resrank_rag.commands import demo as demo_command
from resrank_rag.commands import serve as serve_command

app = typer.Typer(help="ResRank: one-token-per-passage listwise reranking for RAG.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """ResRank: one-token-per-passage listwise reranking for RAG."""


app.command("rerank")(rerank.rerank)
app.command("eval")(eval_command.eval_command)
app.command("bench")(bench_command.bench_command)
app.command("index")(index_command.index)
app.command("search")(search_command.search)
app.command("train")(train_command.train)
app.command("adapt")(adapt_command.adapt)
app.command("fit-features")(fit_features_command.fit_features)
app.command("demo")(demo_command.demo)
app.command("serve")(serve_command.serve)

if __name__ == "__main__":
    app()
