"""Fit the no-LM feature scorer: a checkpoint's ``linear_features`` weights, by RankNet over training lists.

No LM runs: each list becomes a feature matrix once (cosine, ln rank, lexical match), and full-batch Adam
fits the two weight rows (lists with texts, lists given as vectors only) on
``score = cosine + rank prior + features @ w``. The weights start at zero, so fitting starts from the
checkpoint's own LM-off ranking, and the rank prior stays as it is.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from resrank_rag.features import candidate_features, feature_width
from resrank_rag.training.data import TrainingList


@dataclass
class FeatureList:
    """One training list as the linear scorer sees it: fixed scores (cosine + prior), features, labels."""

    base: torch.Tensor
    with_texts: torch.Tensor
    vectors_only: torch.Tensor
    labels: torch.Tensor
    weight: float = 1.0
    item_weights: torch.Tensor | None = None
    """Per candidate, the weight of its pairs as the less relevant side (``TrainingList.weights``)."""


def feature_lists(model, lists: Sequence[TrainingList], passage_vectors: Callable[[list[str]], np.ndarray],
                  weights: Sequence[float] | None = None, progress: bool = True) -> list[FeatureList]:
    """Feature matrices of ``lists`` (in their given, first-stage order) for ``model.config.linear_features``;
    lists with no relevant or no non-relevant candidate are left out (they carry no ranking signal)."""
    kinds = model.config.linear_features
    if not kinds:
        raise ValueError("the model has no linear_features to fit; set ResRankConfig.linear_features, e.g. [rank, cosine, lexical]")
    query_vectors = model.encode_queries([item.query for item in lists])
    out = []
    for i, (item, q_vec) in enumerate(tqdm(list(zip(lists, query_vectors)), desc="Features", unit="list", disable=not progress)):
        labels = np.asarray(item.labels)
        negative = (labels <= 0) if item.weights is None else (labels <= 0) & (np.asarray(item.weights) > 0)
        if not (labels > 0).any() or not negative.any():
            continue
        cosine = passage_vectors(item.texts) @ q_vec
        with torch.no_grad():
            prior = model.rank_prior(len(cosine)).float().numpy()
        out.append(FeatureList(
            torch.from_numpy((cosine + prior).astype(np.float32)),
            torch.from_numpy(candidate_features(kinds, cosine, item.query, item.texts)),
            torch.from_numpy(candidate_features(kinds, cosine, item.query, None)),
            torch.from_numpy(labels),
            1.0 if weights is None else float(weights[i]),
            None if item.weights is None else torch.tensor(item.weights, dtype=torch.float32),
        ))
    if not out:
        raise ValueError("no training list has both a relevant and a non-relevant candidate")
    return out


def fit_linear_scorer(model, rows: Sequence[FeatureList], steps: int = 300, lr: float = 0.01,
                      temperature: float | None = None, warm_start: bool = False) -> list[float]:
    """Fit ``model.linear_scorer`` in place on ``rows`` by weighted RankNet (per list, the (weighted) mean over
    its ordered pairs, as ``losses.ranknet``); returns the training loss per step. Both weight rows learn at
    once, each on its own features, in one batched computation over every pair of every list. The weights
    start at zero, or with ``warm_start`` at the model's current ones."""
    if model.linear_scorer is None:
        raise ValueError("the model has no linear scorer; build it with ResRankConfig.linear_features")
    temperature = temperature or model.config.temperature
    base = torch.cat([row.base for row in rows])
    features = [torch.cat([row.with_texts for row in rows]), torch.cat([row.vectors_only for row in rows])]
    better, worse, owner, pair_weight, offset = [], [], [], [], 0
    for index, row in enumerate(rows):
        i, j = torch.nonzero(row.labels.unsqueeze(1) > row.labels.unsqueeze(0), as_tuple=True)
        w = torch.ones(len(j)) if row.item_weights is None else row.item_weights[j]
        keep = w > 0
        better.append(i[keep] + offset)
        worse.append(j[keep] + offset)
        owner.append(torch.full_like(i[keep], index))
        pair_weight.append(w[keep])
        offset += len(row.labels)
    better, worse, owner, pair_weight = torch.cat(better), torch.cat(worse), torch.cat(owner), torch.cat(pair_weight)
    pairs = torch.zeros(len(rows)).index_add_(0, owner, pair_weight)
    list_weight = torch.tensor([row.weight for row in rows]) / sum(row.weight for row in rows)
    start = model.linear_scorer.weight.detach().clone() if warm_start else torch.zeros_like(model.linear_scorer.weight)
    weight = start.requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=lr)
    curve = []
    for _ in tqdm(range(steps), desc="Fitting", unit="step", leave=False):
        optimizer.zero_grad()
        value = 0.0
        for row_index in (0, 1):
            scores = base + features[row_index] @ weight[row_index]
            pair_loss = torch.nn.functional.softplus(-(scores[better] - scores[worse]) / temperature) * pair_weight
            per_list = torch.zeros(len(rows)).index_add_(0, owner, pair_loss) / pairs
            value = value + (per_list * list_weight).sum()
        value.backward()
        optimizer.step()
        curve.append(float(value.detach()))
    with torch.no_grad():
        model.linear_scorer.weight.copy_(weight.detach())
    return curve


@dataclass
class FeatureRecipe:
    """What ``resrank fit-features`` reads from YAML: the starting checkpoint, the data, the fit."""

    output_dir: str
    datasets: list
    model: str = "resrank-minilm-smollm2"
    """Starting checkpoint; its encoder, rank prior and LM-branch heads are kept as they are."""
    linear_features: list[str] = field(default_factory=lambda: ["rank", "cosine", "lexical"])
    lm_branch: bool = False
    """What the written checkpoint's default path is: False (the no-LM feature scorer) or True (its LM)."""
    list_size: int = 100
    max_positives: int = 8
    max_queries: int | None = 2000
    """Cap on queries per dataset (each gives one list in its first-stage order)."""
    steps: int = 300
    lr: float = 0.01
    seed: int = 0
    embedding_cache: str | None = None

    def __post_init__(self) -> None:
        from resrank_rag.training.config import DatasetSpec, _build

        self.datasets = [_build(DatasetSpec, d) for d in self.datasets]
        if not self.datasets:
            raise ValueError("the feature recipe needs at least one dataset")
        for spec in self.datasets:
            if self.max_queries:
                spec.max_queries = min(spec.max_queries or self.max_queries, self.max_queries)

    @classmethod
    def from_yaml(cls, path) -> FeatureRecipe:
        import yaml

        from resrank_rag.training.config import _build

        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a YAML mapping of FeatureRecipe fields")
        return _build(cls, data)


def add_linear_scorer(model, kinds: Sequence[str]) -> None:
    """Give ``model`` a fresh (zero) linear feature scorer over ``kinds``, in place."""
    model.config = dataclasses.replace(model.config, linear_features=list(kinds))
    model.linear_scorer = torch.nn.Linear(feature_width(kinds), 2, bias=False)
    torch.nn.init.zeros_(model.linear_scorer.weight)


def fit_features(recipe: FeatureRecipe, base_dir: str | Path = ".") -> dict:
    """Fit the recipe's feature scorer on one list per training query and write the checkpoint to
    ``output_dir``; returns what was fitted (weights, lists, loss before and after)."""
    from resrank_rag.embedding_cache import EmbeddingCache
    from resrank_rag.model import ResRank
    from resrank_rag.training.data import load_mix

    started = time.monotonic()
    model = ResRank.from_pretrained(recipe.model, precision="fp32", merge_lora=False, warm_start=False, lm=False)
    add_linear_scorer(model, recipe.linear_features)
    cache = EmbeddingCache(model, recipe.embedding_cache)
    mix = load_mix(recipe.datasets, recipe.list_size, recipe.max_positives, recipe.seed, base_dir,
                   encoder_vectors=(cache.encode, model.encode_queries))
    rng = random.Random(recipe.seed)
    lists, weights = [], []
    for builder in mix.builders:
        built = [builder.build(qid, rng) for qid in builder.query_ids]
        lists += built
        weights += [builder.spec.weight / len(built)] * len(built)  # each dataset counts by its weight, not its size
    rows = feature_lists(model, lists, cache.encode, weights)
    curve = fit_linear_scorer(model, rows, recipe.steps, recipe.lr)
    fitted = {
        "recipe": dataclasses.asdict(recipe) | {"datasets": [dataclasses.asdict(s) for s in recipe.datasets]},
        "lists": len(rows), "loss_start": curve[0], "loss_end": curve[-1],
        "weights": {"with_texts": model.linear_scorer.weight[0].tolist(), "vectors_only": model.linear_scorer.weight[1].tolist()},
        "wall_s": round(time.monotonic() - started, 1),
    }
    model.config = dataclasses.replace(model.config, lm_branch=recipe.lm_branch,
                                       extra={**model.config.extra, "linear_features": fitted})
    model.save_pretrained(Path(recipe.output_dir))
    return fitted
