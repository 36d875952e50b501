"""`resrank fit-features`: fit a checkpoint's no-LM feature scorer (linear weights over cosine, ln rank and
lexical features) on a YAML recipe's training lists, and write the checkpoint. No LM runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fit_features(
    config: Annotated[Path, typer.Option("--config", "-c", exists=True, dir_okay=False, help="Feature recipe (YAML, e.g. configs/features-default.yaml).")],
    output_dir: Annotated[str | None, typer.Option(help="Override output_dir of the recipe.")] = None,
    base_dir: Annotated[Path, typer.Option(help="Folder that dataset paths in the recipe are relative to.")] = Path("."),
) -> None:
    """Fit the linear feature scorer (RankNet, full batch) and save the checkpoint."""
    from rich.console import Console

    from resrank_rag.training.linear import FeatureRecipe, fit_features as run

    try:
        recipe = FeatureRecipe.from_yaml(config)
        if output_dir:
            recipe.output_dir = output_dir
        fitted = run(recipe, base_dir)
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from None
    console = Console()
    console.print(f"{fitted['lists']} lists, RankNet loss {fitted['loss_start']:.4f} -> {fitted['loss_end']:.4f}, {fitted['wall_s']} s")
    console.print(f"weights with texts {[round(w, 4) for w in fitted['weights']['with_texts']]}")
    console.print(f"weights vectors only {[round(w, 4) for w in fitted['weights']['vectors_only']]}")
    console.print(f"wrote {recipe.output_dir} (default path: {'LM' if recipe.lm_branch else 'no LM, feature scorer'})")
