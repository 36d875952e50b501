"""`resrank train`: run the dual-stage training recipe of a YAML config (resumes where it stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[Path, typer.Option("--config", "-c", exists=True, dir_okay=False, help="Training recipe (YAML, see configs/).")],
    output_dir: Annotated[str | None, typer.Option(help="Override output_dir of the config.")] = None,
    model: Annotated[str | None, typer.Option(help="Override the starting model (folder, packaged name or hub id).")] = None,
    base_dir: Annotated[Path, typer.Option(help="Folder that dataset paths in the config are relative to.")] = Path("."),
    resume: Annotated[bool, typer.Option(help="Continue from output_dir/trainer_state.pt when it exists.")] = True,
    stop_after: Annotated[int | None, typer.Option(min=0, help="Save and stop at this global step (resume later).")] = None,
) -> None:
    """Train a ResRank model: stage by stage, with dev evaluation, checkpoints and a curve PNG."""
    from rich.console import Console

    from resrank_rag.training import Trainer, TrainConfig

    recipe = TrainConfig.from_yaml(config)
    if output_dir:
        recipe.output_dir = output_dir
    if model:
        recipe.model = model
    trainer = Trainer(recipe, base_dir=base_dir)
    history = trainer.train(stop_after=stop_after, resume=resume)
    console = Console()
    evals = [h for h in history if "ndcg@10" in h]
    if evals:
        last = evals[-1]
        console.print(f"dev nDCG@10 {last['ndcg@10']:.4f} (LM off {last.get('nolm_ndcg@10', float('nan')):.4f}, dense {last['dense_ndcg@10']:.4f}); best {trainer.best:.4f}")
    console.print(f"step {trainer.step}; outputs in {recipe.output_dir} (model/, best/, curves.png, history.jsonl)")
