"""TrainConfig: data mix, stages, losses, learning rates and LoRA/full/frozen per part, from YAML or code."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PARTS = ("encoder", "reranker", "heads")
PART_MODES = ("frozen", "lora", "full")
LISTWISE_LOSSES = ("ranknet", "listnet", "listmle")
NEGATIVE_SOURCES = ("judged", "run", "bm25", "encoder", "hybrid", "random")
RANKING_SOURCES = ("run", "bm25", "encoder", "hybrid")
"""Sources that rank the corpus, so they can give a first-stage list order; ``run:<name>`` (another run
file of the folder, ``runs/<name>.<split>.trec``) ranks too."""


def is_ranking_source(source: str) -> bool:
    return source in RANKING_SOURCES or source.startswith("run:")


def check_ema_decay(value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ValueError(f"ema_decay must be between 0 and 1 (e.g. 0.98), or null for no averaging; got {value}")
LIST_ORDERS = ("shuffled", "first_stage")
SCHEDULES = ("constant", "linear")
DEFAULT_LR = {"encoder": 2e-5, "reranker": 1e-4, "heads": 1e-4, "rank_prior": 2e-3}


@dataclass
class DatasetSpec:
    """One BEIR-layout folder split, mixed into training with ``weight``."""

    path: str
    split: str = "train"
    weight: float = 1.0
    negatives: list[str] = field(default_factory=lambda: ["judged", "run", "bm25"])
    """Where list negatives come from, in order of preference: score-0 qrels (``judged``), the shipped
    ``runs/bm25.<split>.trec`` (``run``), another run file ``runs/<name>.<split>.trec`` (``run:<name>``, e.g.
    ``run:splade``), BM25 over the corpus (``bm25``), the current encoder
    (``encoder``), reciprocal-rank fusion of those two (``hybrid``, as ``--first-stage hybrid``), random
    corpus passages (``random``)."""
    query_range: tuple[float, float] = (0.0, 1.0)
    """Fraction of the (file-ordered) judged queries to use, e.g. [0.0, 0.5] for a train half."""
    max_queries: int | None = None
    list_order: str = "shuffled"
    """``shuffled``: positives plus negatives in random order (position carries no label). ``first_stage``:
    the first ranking source's top ``list_size`` in rank order, positives where that ranking put them
    (queries it misses are skipped), as lists arrive at test time: what the rank prior learns from."""

    def __post_init__(self) -> None:
        if self.list_order not in LIST_ORDERS:
            raise ValueError(f"{self.path}: list_order must be one of {LIST_ORDERS}, got {self.list_order!r}")
        if self.list_order == "first_stage" and not any(is_ranking_source(n) for n in self.negatives):
            raise ValueError(f"{self.path}: list_order 'first_stage' needs a ranking source in negatives: {RANKING_SOURCES} or run:<name>")
        bad = [n for n in self.negatives if n not in NEGATIVE_SOURCES and not (n.startswith("run:") and len(n) > 4)]
        if bad:
            raise ValueError(f"{self.path}: unknown negative sources {bad}; choose from {NEGATIVE_SOURCES}")
        if self.weight <= 0:
            raise ValueError(f"{self.path}: weight must be positive")
        start, end = self.query_range
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"{self.path}: query_range must satisfy 0 <= start < end <= 1, got {self.query_range}")
        self.query_range = (float(start), float(end))


@dataclass
class StageConfig:
    """One training stage: what trains, with which losses and learning rates, for how many steps."""

    name: str
    steps: int
    train: dict[str, str] = field(default_factory=lambda: {"encoder": "frozen", "reranker": "lora", "heads": "full"})
    """Per part (encoder, reranker, heads): ``frozen``, ``lora`` (peft adapters) or ``full``."""
    lr: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LR))
    """Per part; ``rank_prior`` is the single rank-prior weight, trained with the heads at its own rate."""
    infonce_weight: float = 1.0
    """Contrastive retrieval loss on encoder vectors (in-batch + list negatives); only runs when the
    encoder trains in this stage."""
    listwise_weight: float = 1.0
    listwise_loss: str = "ranknet"
    distill_weight: float = 0.0
    """KL from the model's list distribution to the dense (encoder cosine) one: keeps the reranker near
    its retriever."""
    margin_weight: float = 0.0
    """Hinge on positives that the model scores below the dense score: a floor at the retriever."""
    anchor: str = "dense"
    """What the distill and margin terms hold the model near: ``dense`` (encoder cosine) or ``nolm`` (the
    same model with its LM branch removed: cosine plus the current rank prior)."""
    alignment_weight: float = 0.0
    """Weight of the label-free alignment loss (``training/alignment.py``): the reranker LM predicts a
    passage's first ``alignment_tokens`` tokens from its single projected vector. A stage with only this
    loss (listwise_weight 0) samples ``alignment_passages`` passages a step from the datasets' corpora."""
    alignment_tokens: int = 24
    alignment_passages: int = 32
    temperature: float = 0.05
    """Divides cosine scores in the listwise and distillation losses."""
    infonce_temperature: float = 0.05
    warmup_steps: int = 0
    schedule: str = "constant"
    """After warm-up: ``constant`` rates, or ``linear`` decay, reaching zero just after the stage's last step."""
    grad_clip: float = 1.0

    def rate_factor(self, step: int) -> float:
        """The share of each learning rate at ``step`` of this stage (0-based): warm-up, then ``schedule``."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "linear":
            return max(0.0, (self.steps - step) / max(1, self.steps - self.warmup_steps))
        return 1.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"stage {self.name!r}: steps must be >= 0")
        self.train = {**{"encoder": "frozen", "reranker": "frozen", "heads": "full"}, **self.train}
        self.lr = {**DEFAULT_LR, **{k: float(v) for k, v in self.lr.items()}}
        unknown = set(self.lr) - set(DEFAULT_LR)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown lr keys {sorted(unknown)}; use {PARTS} or 'rank_prior'")
        for part, mode in self.train.items():
            if part not in PARTS or mode not in PART_MODES:
                raise ValueError(f"stage {self.name!r}: train.{part}={mode!r}; parts {PARTS}, modes {PART_MODES}")
        if self.train["heads"] == "lora":
            raise ValueError(f"stage {self.name!r}: heads are small; train them 'full' or keep them 'frozen'")
        if self.listwise_loss not in LISTWISE_LOSSES:
            raise ValueError(f"stage {self.name!r}: listwise_loss must be one of {LISTWISE_LOSSES}")
        if self.anchor not in ("dense", "nolm"):
            raise ValueError(f"stage {self.name!r}: anchor must be 'dense' or 'nolm', got {self.anchor!r}")
        if self.alignment_weight < 0 or self.alignment_tokens < 1 or self.alignment_passages < 1:
            raise ValueError(f"stage {self.name!r}: alignment_weight must be >= 0, alignment_tokens and alignment_passages >= 1")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"stage {self.name!r}: schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.temperature <= 0 or self.infonce_temperature <= 0:
            raise ValueError(f"stage {self.name!r}: temperatures must be positive")


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    encoder_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    reranker_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainConfig:
    """Everything a training run needs; ``resrank train --config train.yaml`` reads it."""

    output_dir: str
    datasets: list[DatasetSpec]
    stages: list[StageConfig]
    model: str = "resrank-minilm-smollm2"
    """Starting checkpoint: packaged name, checkpoint folder or hub id."""
    from_untrained: bool = False
    """Start from ``model``'s configuration and backbones with fresh heads (zero residual, zero rank prior)
    instead of its trained weights: how the shipped default is retrained from scratch."""
    dev: list[DatasetSpec] = field(default_factory=list)
    """Dev splits, each reranked over its shipped run (or BM25) every ``eval_every`` steps; the mean of
    their nDCG@10 picks ``best/``. One mapping or a list of them."""
    dev_max_queries: int | None = 50
    list_size: int = 100
    """Candidates per training list (match the rerank depth used at test time)."""
    lists_per_step: int = 4
    max_positives: int = 8
    eval_every: int = 50
    save_every: int = 25
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    embedding_cache: str | None = None
    """SQLite file for frozen-encoder passage vectors; None: the user cache shared with evaluation."""
    model_overrides: dict = field(default_factory=dict)
    """ResRankConfig fields to change on the starting model (e.g. residual_weight, temperature). With
    ``from_untrained`` they may also shape it (candidate_features, adaptive_prior, reranker_layers, ...)."""
    ema_decay: float | None = None
    """Keep an exponential moving average of every trained weight (``decay * average + (1 - decay) * weight``
    after each step) and evaluate, pick ``best/`` and export with it; None: the weights as they are. 0.98
    averages over about the last 50 steps, smoothing the swings that small batches of lists give LoRA."""
    autocast: str | None = None
    """``bf16``: run the reranker forward under bfloat16 autocast (faster on CPUs with avx512_bf16);
    None: float32."""

    def __post_init__(self) -> None:
        dev = self.dev or []
        self.dev = [_build(DatasetSpec, d) for d in (dev if isinstance(dev, list) else [dev])]
        if not self.datasets:
            raise ValueError("TrainConfig needs at least one dataset")
        if not self.stages:
            raise ValueError("TrainConfig needs at least one stage")
        check_ema_decay(self.ema_decay)
        if self.autocast not in (None, "bf16"):
            raise ValueError(f"autocast must be 'bf16' or null, got {self.autocast!r}")
        if self.list_size < 2 or self.lists_per_step < 1:
            raise ValueError("list_size must be >= 2 and lists_per_step >= 1")
        for part in PARTS:
            modes = {s.train[part] for s in self.stages} - {"frozen"}
            if len(modes) > 1:
                raise ValueError(f"{part} is trained as {sorted(modes)} in different stages; pick one of lora/full")

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def lora_parts(self) -> set[str]:
        return {part for part in ("encoder", "reranker") if any(s.train[part] == "lora" for s in self.stages)}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}; known: {sorted(known)}")
        for key in ("output_dir", "datasets", "stages"):
            if key not in data:
                raise ValueError(f"the training config needs {key!r}")
        data["datasets"] = [_build(DatasetSpec, d) for d in data["datasets"]]
        data["stages"] = [_build(StageConfig, s) for s in data["stages"]]
        if "lora" in data:
            data["lora"] = _build(LoraSettings, data["lora"])
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"training config {path} not found") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a YAML mapping of TrainConfig fields")
        return cls.from_dict(data)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))


def _build(cls, data):
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a mapping, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
