"""`python -m demos.docqa`: the same options as `resrank demo` (web page; --terminal, --chat, --once)."""

import typer

from resrank_rag.commands.demo import demo

if __name__ == "__main__":
    typer.run(demo)
