"""`resrank adapt`: tune the reranker to a collection's own documents (encoder frozen, nothing re-indexed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resrank_rag.model import DEFAULT_MODEL


def adapt(
    collection: Annotated[str, typer.Option(help="Qdrant collection to adapt to (made by `resrank index`).")],
    out: Annotated[Path, typer.Option(help="Folder for the adapted model (OUT/model), the report and the resumable run.")],
    queries: Annotated[Path | None, typer.Option(dir_okay=False, help='JSONL: {"query", "relevant": [ids], "grades"?} or {"query", "positive": text} per line.')] = None,
    feedback: Annotated[Path | None, typer.Option(dir_okay=False, help="Users' 👍/👎: the demo's feedback.sqlite or its JSONL export (alone or with --queries).")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Train on pseudo-queries made from the collection (no labels needed).")] = False,
    synthetic_kind: Annotated[list[str] | None, typer.Option(help="Pseudo-query kinds (repeat): title, sentence, keyphrases, questions (SmolLM2, slow).")] = None,
    synthetic_count: Annotated[int, typer.Option(min=1, help="Pseudo-queries to make (one per sampled chunk).")] = 800,
    synthetic_from: Annotated[Path | None, typer.Option(dir_okay=False, help="Make the pseudo-queries only from the chunks the demo's logged questions showed first (feedback.sqlite or export; ratings not needed). Implies --synthetic.")] = None,
    base: Annotated[str, typer.Option(help="The model the collection was indexed with (folder, packaged name or hub id).")] = DEFAULT_MODEL,
    path: Annotated[str | None, typer.Option(help="Embedded Qdrant folder (default ./.resrank/qdrant).")] = None,
    url: Annotated[str | None, typer.Option(help="Qdrant server URL instead of an embedded folder.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="QDRANT_API_KEY", help="Qdrant server API key.")] = None,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="First stage: BM25 + dense fusion, as `resrank search --hybrid` serves.")] = False,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.99, help="Share of the queries held out to check the result.")] = 0.2,
    depth: Annotated[int, typer.Option(min=2, help="Candidates per held-out query: the k you search with.")] = 100,
    list_size: Annotated[int, typer.Option(min=2, help="First-stage candidates per training list.")] = 30,
    prior_steps: Annotated[int, typer.Option(min=0, help="Steps training only the rank prior.")] = 40,
    steps: Annotated[int, typer.Option(min=0, help="Steps of LoRA on the reranker LM plus the heads.")] = 300,
    eval_every: Annotated[int, typer.Option(min=1, help="Evaluate on the held-out part every N steps.")] = 50,
    patience: Annotated[int, typer.Option(min=0, help="Stop after N evaluations without a gain (0: never).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of list sampling and pseudo-queries.")] = 0,
    ema_decay: Annotated[float, typer.Option(help="Evaluate and publish the moving average of the trained weights with this decay; 0: the weights as they are.")] = 0.98,
    refit_features: Annotated[bool | None, typer.Option("--refit-features/--keep-features", help="First refit the base's no-LM feature scorer on the same lists (as `resrank fit-features`), then train the LM on top. Default: when the base has one.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run saved in OUT/run when there is one.")] = True,
) -> None:
    """Adapt the reranker to COLLECTION: lists from its own first stage with the stored vectors, the
    encoder frozen; prints LM off / base / adapted on a held-out part and keeps the base unless it lost."""
    from rich.console import Console

    from resrank_rag.adapt import adapt as run_adapt
    from resrank_rag.adapt.synthetic import DEFAULT_KINDS
    from resrank_rag.index import ModelMismatchError

    if queries is None and feedback is None and not synthetic and synthetic_from is None:
        raise typer.BadParameter("give --queries FILE (labelled questions), --feedback FILE (users' 👍/👎) or --synthetic (pseudo-queries)")
    try:
        result = run_adapt(
            collection, queries, out=out, base=base, path=path, url=url, api_key=api_key,
            first_stage="hybrid" if hybrid else "dense", feedback=feedback, synthetic=synthetic,
            synthetic_kinds=tuple(synthetic_kind or DEFAULT_KINDS), synthetic_count=synthetic_count, synthetic_from=synthetic_from,
            holdout=holdout,
            depth=depth, list_size=list_size, prior_steps=prior_steps, steps=steps, eval_every=eval_every,
            patience=patience, seed=seed, ema_decay=ema_decay or None, refit_features=refit_features, resume=resume,
        )
    except (FileNotFoundError, ValueError, ModelMismatchError) as error:
        raise typer.BadParameter(str(error)) from None
    console = Console()
    rated = result.data.get("feedback")
    if rated:
        console.print(f"feedback: {rated['events']} events on {rated['lists']} lists ({rated['dropped_events']} dropped: "
                      f"chunks no longer in {collection!r}; {rated['lists_without_positive']} lists without a 👍 left)",
                      highlight=False)
    console.print(result.table(), highlight=False)
    console.print(f"{result.steps} steps (best at step {result.best_step}), {result.wall_s:.0f} s", highlight=False)
    console.print(result.message, highlight=False)
    if result.adapted:
        flag = " --hybrid" if hybrid else ""
        console.print(f'Search with it: resrank search "..." --collection {collection} --model {result.model}{flag}',
                      highlight=False)
