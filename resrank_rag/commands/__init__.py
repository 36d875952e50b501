"""One module per `resrank` subcommand; resrank_rag.cli registers them."""
