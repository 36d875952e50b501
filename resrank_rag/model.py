"""ResRank: one encoder vector per passage, one reranker position per passage, one forward pass.

The network and its scoring; loading and saving are resrank_rag/loading.py, input checks resrank_rag/inputs.py."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from resrank_rag import loading
from resrank_rag.backbones import keep_layers
from resrank_rag.config import ResRankConfig
from resrank_rag.encoder import DOCUMENT, QUERY, clean_texts, embed_with_grad, encode, fingerprint
from resrank_rag.features import candidate_features, feature_width
from resrank_rag.inputs import check_query, check_query_vectors, check_texts, check_top_n, split_candidate_lists
from resrank_rag.loading import DEFAULT_MODEL
from resrank_rag.peft_adapters import is_peft
from resrank_rag.prompt_cache import PromptPrefixCache
from resrank_rag.results import RerankResult, ranked

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_MODEL", "ResRank"]


def _build_projector(kind: str, d_in: int, d_out: int) -> nn.Module:
    if kind == "identity":
        if d_in != d_out:
            raise ValueError(f"projector='identity' needs equal widths, got encoder {d_in} and reranker {d_out}")
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


class ResRank(nn.Module):
    """The ResRank reranker with its encoder.

    score(passage) = cosine(q, p), with q = e_q + w * H_q(h_q) and p = e_p + w * H_p(h_p):
    e are encoder vectors, h the reranker's hidden states at the query-representation position and at
    each passage's single input position, H zero-initialised heads, w = ``config.residual_weight``.
    With ``config.rank_prior`` a learned ``w_rank * -ln(rank)`` (rank in the caller's order, w_rank
    starting at 0) is added, so the first stage's ranking is a feature of the score. Optional parts, all
    zero at initialisation: per-candidate features added to the passage positions
    (``candidate_features``), a per-query prior weight (``adaptive_prior``), a scalar score head.
    """

    precision = "fp32"
    """What the reranker LM runs at (``from_pretrained`` sets it; reduced precisions are inference-only)."""

    def __init__(self, config: ResRankConfig, encoder: SentenceTransformer, reranker: nn.Module | None, reranker_tokenizer=None):
        """``reranker`` None builds the no-LM model: no LM backbone, no LM-branch heads (a checkpoint's
        LM-branch tensors are kept aside and saved again unchanged). ``encoder`` is a SentenceTransformer
        carrying the config's pooling and prefixes (resrank_rag/encoder.py)."""
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.reranker = reranker
        self.reranker_tokenizer = reranker_tokenizer
        self.rank_prior_weight = nn.Parameter(torch.zeros(()))
        width = feature_width(config.linear_features)
        self.linear_scorer = nn.Linear(width, 2, bias=False) if width else None
        if self.linear_scorer is not None:  # row 0: lists with texts, row 1: vectors only
            nn.init.zeros_(self.linear_scorer.weight)
        self._lm_heads_at_rest: dict[str, torch.Tensor] = {}
        self._lm_folder_at_rest: Path | None = None
        self._fingerprint: str | None = None
        self._encoder_lock = threading.Lock()  # fast tokenizers are not safe to call from several threads
        if reranker is not None:
            self._build_lm_branch(config, self.embedding_dim, reranker, reranker_tokenizer)
        self.eval()

    def _build_lm_branch(self, config: ResRankConfig, d_enc: int, reranker: nn.Module, reranker_tokenizer) -> None:
        if not is_peft(reranker):
            keep_layers(reranker, config.reranker_layers)
        d_rr = int(reranker.config.hidden_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.projector = _build_projector(config.projector, d_enc, d_rr)
            embed_std = float(reranker.get_input_embeddings().weight.detach().float().std())
            self.marker = nn.Parameter(torch.randn(d_rr) * embed_std)
            self.passage_head = nn.Linear(d_rr, d_enc)
            self.query_head = nn.Linear(d_rr, d_enc)
            width = feature_width(config.candidate_features)
            if width:
                self.feature_projector = nn.Linear(width, d_rr)
                nn.init.normal_(self.feature_projector.weight, std=embed_std)
                nn.init.zeros_(self.feature_projector.bias)
            self.prior_head = nn.Linear(d_rr, 1) if config.adaptive_prior else None
            self.score_head = nn.Linear(d_rr, 1) if config.score_head else None
        if config.residual:
            for head in (self.passage_head, self.query_head):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        for head in (self.prior_head, self.score_head):
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        prefix, suffix = config.prompt_template.split("{query}", 1)
        self._prefix_ids = reranker_tokenizer(prefix, add_special_tokens=True).input_ids
        self._suffix_ids = reranker_tokenizer(suffix, add_special_tokens=False).input_ids
        self._prefix_cache = PromptPrefixCache(self._prefix_ids)
        self._tokenizer_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.rank_prior_weight.device

    @property
    def runs_lm(self) -> bool:
        """Whether ``rerank`` runs the reranker LM (its backbone is loaded and ``config.lm_branch`` is on)."""
        return self.reranker is not None and self.config.lm_branch

    # ---------------------------------------------------------------- loading and saving (resrank_rag/loading.py)
    @classmethod
    def from_config(cls, config: ResRankConfig) -> ResRank:
        """A model with the configured backbones and freshly initialised (zero-residual) heads."""
        return loading.from_config(cls, config)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        device: str | None = None,
        *,
        precision: str = "auto",
        merge_lora: bool = True,
        warm_start: bool = True,
        lm: bool | None = None,
    ) -> ResRank:
        """Load a checkpoint folder, a packaged model name (default ``resrank-minilm-smollm2``) or a hub id,
        ready for inference (resrank_rag/inference.py, docs/precision.md).

        ``precision``: the reranker LM's ``fp32``, ``bf16``, ``fp16`` (CUDA) or ``int8`` (CPU); ``auto``
        picks the fastest one measured to keep the ranking on this hardware. ``merge_lora`` folds LoRA
        adapters into the weights; ``warm_start`` runs one tiny rerank. ``lm``: run the reranker LM (True),
        or the no-LM path without loading the LM backbone at all (False); None: what the checkpoint says
        (``config.lm_branch``). To train, load with ``precision="fp32", merge_lora=False, lm=True``.
        """
        return loading.from_pretrained(cls, name_or_path, device, precision=precision, merge_lora=merge_lora,
                                       warm_start=warm_start, lm=lm)

    @classmethod
    def untrained(cls, name_or_path: str | Path = DEFAULT_MODEL) -> ResRank:
        """The named model's configuration and backbones with fresh heads: ranks exactly like dense cosine."""
        return cls.from_config(cls.untrained_config(name_or_path))

    @classmethod
    def untrained_config(cls, name_or_path: str | Path = DEFAULT_MODEL) -> ResRankConfig:
        """The configuration ``untrained`` builds from: a packaged name's defaults, or a folder's config."""
        return loading.untrained_config(name_or_path)

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters that belong to ResRank itself (rank prior, linear scorer, projector, marker, residual
        heads; without the LM backbone, the LM-branch heads as loaded)."""
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(("encoder.", "reranker."))}
        return {**self._lm_heads_at_rest, **own}

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config, heads and, per backbone, nothing (reference), a LoRA adapter, or full weights (the
        encoder as a SentenceTransformer folder; an adapter's base loads from the backbone's name)."""
        loading.save(self, folder)

    # ---------------------------------------------------------------- encoding
    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.get_embedding_dimension())

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def encoder_fingerprint(self) -> str:
        """Stable id of what the encoder computes; keys embedding caches and vector stores."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.encoder, self.config)
        return self._fingerprint

    def refresh_encoder_fingerprint(self) -> None:
        """Forget the cached fingerprint after the encoder's weights change (training does this)."""
        self._fingerprint = None

    def encode(self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None) -> np.ndarray:
        """(N, dim) float32 L2-normalised passage vectors, the same ones a vector store should hold."""
        texts = check_texts(texts, "texts")
        with self._encoder_lock:
            return encode(self.encoder, texts, DOCUMENT, batch_size, show_progress_bar)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None) -> np.ndarray:
        """(N, dim) float32 L2-normalised query vectors (the config's ``query_prefix`` is the encoder's query prompt)."""
        texts = check_texts(texts, "queries")
        with self._encoder_lock:
            return encode(self.encoder, texts, QUERY, batch_size, show_progress_bar)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode_queries([check_query(text)])[0]

    # ---------------------------------------------------------------- scoring
    def max_candidates(self, query: str = "") -> int:
        """How many candidates fit the reranker's context in one pass for this query (no limit without the LM)."""
        if not self.runs_lm:
            return 10**9
        limit = getattr(self.reranker.config, "max_position_embeddings", None) or 10**9
        return limit - self.reranker_input_length(query, 0)

    def reranker_input_length(self, query: str, n_candidates: int) -> int:
        """Positions the reranker reads for this query and list: prompt tokens + one per candidate (+ marker);
        0 when ``rerank`` runs no LM."""
        if not self.runs_lm:
            return 0
        return len(self._prompt_ids(query)) + n_candidates + (self.config.query_position == "marker")

    def _prompt_ids(self, query: str) -> list[int]:
        query = clean_texts([query], self.config.max_query_tokens)[0]
        with self._tokenizer_lock:  # fast tokenizers are not safe to call from several threads
            query_ids = self.reranker_tokenizer(
                query, add_special_tokens=False, truncation=True, max_length=self.config.max_query_tokens
            ).input_ids
        return self._prefix_ids + query_ids + self._suffix_ids

    def _feed_order(self, query_vector: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
        n = passages.size(0)
        if self.config.candidate_order == "reverse":
            return torch.arange(n - 1, -1, -1)
        if self.config.candidate_order == "dense":
            return torch.argsort(-(passages.detach() @ query_vector.detach()), stable=True).cpu()
        return torch.arange(n)

    def _ordered(self, ordered: bool | None) -> bool:
        """Whether candidates arrive best first: ``ordered``, or the config's ``rank_prior`` when None."""
        if ordered is not None and not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True, False or None, got {ordered!r}")
        return self.config.rank_prior if ordered is None else ordered

    def rank_prior(self, k: int, device=None, dtype=torch.float32, ordered: bool | None = None,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
        """The learned first-stage prior ``-w * ln(rank)`` for ranks 1..k (zeros when not ``ordered``);
        ``w`` is ``weight`` when given (a per-query weight), else the checkpoint's ``w_rank``."""
        ranks = torch.arange(1, k + 1, device=device, dtype=dtype)
        if not self._ordered(ordered):
            return torch.zeros_like(ranks)
        return -(self.rank_prior_weight if weight is None else weight).to(dtype) * torch.log(ranks)

    def linear_term(self, cosine: torch.Tensor, query: str, texts: Sequence[str] | None, ordered: bool) -> torch.Tensor:
        """The learned linear feature term of one list (zeros without ``linear_features``): weights row 0
        for a list given with texts, row 1 for vectors only; the rank column counts only when ``ordered``."""
        if self.linear_scorer is None:
            return torch.zeros_like(cosine)
        features = candidate_features(self.config.linear_features, cosine.detach().float().cpu().numpy(), query, texts)
        if not ordered and "rank" in self.config.linear_features:
            features[:, _rank_column(self.config.linear_features)] = 0.0
        weights = self.linear_scorer.weight[0 if texts is not None else 1]
        return torch.from_numpy(features).to(device=cosine.device, dtype=weights.dtype) @ weights.to(cosine.device)

    def scores_without_lm(
        self, query_vectors: torch.Tensor, passage_vectors: Sequence[torch.Tensor], ordered: bool | None = None,
        queries: Sequence[str] | None = None, texts: Sequence[Sequence[str] | None] | None = None, linear: bool = True,
    ) -> list[torch.Tensor]:
        """This checkpoint with its reranker branch removed: cosine plus its rank prior plus (``linear``) its
        linear feature term, no LM forward. ``queries`` and ``texts`` feed the lexical features (None:
        vectors only)."""
        ordered = self._ordered(ordered)
        if texts is not None and queries is None:
            raise ValueError("texts need their queries too (lexical features compare the two)")
        scores = []
        for i, (q_vec, vectors) in enumerate(zip(nn.functional.normalize(query_vectors.float(), dim=-1), passage_vectors)):
            cosine = nn.functional.normalize(vectors.float(), dim=-1) @ q_vec.to(vectors.device)
            prior = self.rank_prior(cosine.size(0), cosine.device, ordered=ordered).detach()
            query = "" if queries is None else queries[i]
            term = self.linear_term(cosine, query, None if texts is None else texts[i], ordered) if linear else 0.0
            scores.append(cosine + prior + term)
        return scores

    def score_lists(
        self,
        queries: Sequence[str],
        passage_vectors: Sequence[torch.Tensor],
        query_vectors: torch.Tensor | None = None,
        texts: Sequence[Sequence[str] | None] | None = None,
        ordered: bool | None = None,
    ) -> list[torch.Tensor]:
        """Scores (cosine, plus the rank prior), one tensor per list, in one batched reranker forward. Differentiable.

        ``passage_vectors[i]`` is (K_i, dim) encoder vectors; ``query_vectors`` (B, dim) or None to encode;
        ``texts[i]`` the candidates' texts (for lexical features) or None; ``ordered``: whether the lists
        arrive best first, so the rank prior applies (None: ``config.rank_prior``).
        """
        ordered = self._ordered(ordered)
        if len(queries) != len(passage_vectors) or (texts is not None and len(texts) != len(queries)):
            raise ValueError("queries, passage_vectors (and texts) must have the same length")
        if query_vectors is None:
            query_vectors = embed_with_grad(self.encoder, queries, QUERY)
        if self.reranker is None:
            raise RuntimeError("this model was loaded without its reranker LM; load it with lm=True to run the LM branch")
        device = self.marker.device
        dtype = self.marker.dtype
        query_vectors = nn.functional.normalize(query_vectors.to(device=device, dtype=dtype), dim=-1)
        embed = self.reranker.get_input_embeddings()
        prefix_states = self._prefix_cache.states(self.reranker, embed)
        skip = len(self._prefix_cache) if prefix_states is not None else 0  # prompt positions the cache holds
        kinds = self.config.candidate_features
        rows, spans = [], []
        for i, (query, vectors, q_vec) in enumerate(zip(queries, passage_vectors, query_vectors)):
            vectors = nn.functional.normalize(vectors.to(device=device, dtype=dtype), dim=-1)
            order = self._feed_order(q_vec, vectors)
            prompt = self._prompt_ids(query)
            fed = self.projector(vectors[order.to(device)])
            if kinds:
                cosines = (vectors.detach() @ q_vec.detach()).float().cpu().numpy()
                features = candidate_features(kinds, cosines, query, None if texts is None else texts[i])
                fed = fed + self.feature_projector(torch.from_numpy(features).to(device=device, dtype=dtype)[order.to(device)])
            parts = [embed(torch.tensor(prompt[skip:], device=device)).to(dtype), fed]
            if self.config.query_position == "marker":
                parts.append(self.marker.unsqueeze(0))
            length = sum(part.size(0) for part in parts)
            limit = getattr(self.reranker.config, "max_position_embeddings", None)
            if limit and length > limit:
                raise ValueError(
                    f"{vectors.size(0)} candidates plus {len(prompt)} query tokens need {length} positions, "
                    f"more than the reranker's context of {limit}; pass at most {self.max_candidates(query)} "
                    "candidates per call (e.g. rerank the first-stage top-k)"
                )
            rows.append(torch.cat(parts))
            spans.append((len(prompt) - skip, vectors, order))
        width = max(row.size(0) for row in rows)
        inputs = torch.zeros(len(rows), width, rows[0].size(1), device=device, dtype=dtype)
        mask = torch.zeros(len(rows), skip + width, device=device, dtype=torch.long)
        mask[:, :skip] = 1
        for i, row in enumerate(rows):
            inputs[i, : row.size(0)] = row
            mask[i, skip : skip + row.size(0)] = 1
        positions = torch.arange(skip, skip + width, device=device).unsqueeze(0).expand(len(rows), -1)
        cache = dict(use_cache=False) if prefix_states is None else self._prefix_cache.forward_kwargs(
            self.reranker, prefix_states, len(rows)
        )
        hidden = self.reranker(inputs_embeds=inputs, attention_mask=mask, position_ids=positions, **cache).last_hidden_state
        weight = self.config.residual_weight
        scores = []
        for i, (start, vectors, order) in enumerate(spans):
            k = vectors.size(0)
            h_passages = _layer_norm(hidden[i, start : start + k])
            h_query = _layer_norm(hidden[i, start + k] if self.config.query_position == "marker" else hidden[i, start - 1])
            fed = weight * self.passage_head(h_passages)
            query = weight * self.query_head(h_query)
            if self.config.residual:
                fed = vectors[order.to(device)] + fed
                query = query_vectors[i] + query
            cosine = nn.functional.normalize(fed, dim=-1) @ nn.functional.normalize(query, dim=-1)
            if self.score_head is not None:
                cosine = cosine + self.score_head(h_passages).squeeze(-1)
            score = torch.empty_like(cosine).scatter(0, order.to(device), cosine)
            per_query = None if self.prior_head is None else self.rank_prior_weight + self.prior_head(h_query).squeeze(-1)
            score = score + self.rank_prior(k, device, score.dtype, ordered=ordered, weight=per_query)
            dense = vectors @ query_vectors[i]
            scores.append(score + self.linear_term(dense, queries[i], None if texts is None else texts[i], ordered).to(score.dtype))
        return scores

    # ---------------------------------------------------------------- public rerank API
    def rerank(
        self,
        query: str,
        candidates: Sequence[str] | np.ndarray | None = None,
        top_n: int | None = None,
        *,
        vectors: np.ndarray | Sequence[Sequence[float]] | None = None,
        query_vector: np.ndarray | None = None,
        ordered: bool | None = None,
    ) -> list[RerankResult]:
        """Rank candidates (texts, precomputed vectors, or both) for one query, best first.

        With vectors the encoder never runs on the candidates. Results carry the original index,
        a plain float cosine score and the text when texts were given. ``ordered``: whether the candidates
        arrive best first from a first stage, so the learned rank prior applies; pass False for candidates
        in no particular order (None: the checkpoint's default, ``config.rank_prior``).
        """
        query_vectors = None if query_vector is None else [query_vector]
        return self.rerank_batch(
            [query], [candidates], top_n, vectors=None if vectors is None else [vectors],
            query_vectors=query_vectors, ordered=ordered,
        )[0]

    def rerank_batch(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[str] | np.ndarray | None],
        top_n: int | None = None,
        *,
        vectors: Sequence[np.ndarray | None] | None = None,
        query_vectors: Sequence[np.ndarray] | np.ndarray | None = None,
        batch_size: int = 8,
        ordered: bool | None = None,
    ) -> list[list[RerankResult]]:
        """``rerank`` for several queries, batched with padding ``batch_size`` lists per forward."""
        ordered = self._ordered(ordered)
        top_n = check_top_n(top_n)
        queries = [check_query(q) for q in queries]
        lists = split_candidate_lists(len(queries), candidates, vectors, self.embedding_dim)
        query_vectors = check_query_vectors(query_vectors, len(queries), self.embedding_dim)
        missing = [t for texts, vecs in lists if vecs is None for t in texts]
        encoded, offset = self.encode(missing), 0  # one encoder call for every list given as texts only
        for i, (texts, vecs) in enumerate(lists):
            if vecs is None:
                lists[i] = (texts, encoded[offset : offset + len(texts)])
                offset += len(texts)
        results: list[list[RerankResult]] = [[] for _ in queries]
        todo = [i for i, (_, vecs) in enumerate(lists) if len(vecs)]
        if not todo:  # nothing to rank: skip encoding the queries
            return results
        q_vecs = self.encode_queries(queries) if query_vectors is None else query_vectors
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                lists_vectors = [torch.from_numpy(lists[i][1]) for i in chunk]
                kwargs = dict(ordered=ordered, texts=[lists[i][0] for i in chunk])
                if self.runs_lm:
                    scores = self.score_lists([queries[i] for i in chunk], lists_vectors, torch.from_numpy(q_vecs[chunk]), **kwargs)
                else:
                    scores = self.scores_without_lm(torch.from_numpy(q_vecs[chunk]), lists_vectors,
                                                    queries=[queries[i] for i in chunk], **kwargs)
                for i, score in zip(chunk, scores):
                    results[i] = ranked(score.float().cpu().numpy(), lists[i][0], top_n)
        return results


def _rank_column(kinds: Sequence[str]) -> int:
    return feature_width(list(kinds)[: list(kinds).index("rank")])


def _layer_norm(hidden: torch.Tensor) -> torch.Tensor:
    return nn.functional.layer_norm(hidden, hidden.shape[-1:])
