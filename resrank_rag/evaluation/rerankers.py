"""Rerankers compared by the harness, each scoring one candidate list and reporting what it cost.

``resrank``, ``resrank-vectors``, ``resrank-nolm``, ``features``, ``prior`` and ``dense`` read stored
passage vectors (as from a vector store). ``resrank`` is the checkpoint as it runs by default, with the
candidate texts (for lexical features); ``resrank-vectors`` the same with vectors only. ``resrank-nolm``
is the same checkpoint with its reranker branch removed (cosine, rank prior and its linear feature term,
no LM forward): the baseline its LM must beat. ``features`` is the no-LM feature scorer: a no-LM
feature checkpoint's own; for a checkpoint that runs its LM, the packaged default's (same encoder).
``prior`` is cosine plus the checkpoint's rank prior alone. The two fulltext baselines feed passage
texts, truncated to a token budget, to the same LM that ResRank uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RERANKERS = ("resrank", "resrank-vectors", "resrank-nolm", "features", "prior", "dense", "fulltext-listwise", "pointwise")
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Reranked:
    """Scores in candidate order, plus the work done: LM input tokens and passages encoded now."""

    scores: list[float]
    lm_tokens: int = 0
    encoded_passages: int = 0


def _stored_or_encoded(model, texts: list[str], vectors: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The stored vectors, or the texts encoded now; and how many passages were encoded."""
    return (vectors, 0) if vectors is not None else (model.encode(texts), len(texts))


class ResRankReranker:
    """ResRank over stored vectors: one reranker forward of prompt + K passage positions (+ marker).
    With ``with_texts`` the candidate texts go along (lexical features); without, vectors only."""

    name = "resrank"
    uses_vectors = True

    def __init__(self, model, name: str = "resrank", with_texts: bool = True):
        self.model = model
        self.name = name
        self.with_texts = with_texts

    def rerank(self, query: str, texts: list[str], vectors: np.ndarray | None) -> Reranked:
        vectors, encoded = _stored_or_encoded(self.model, texts, vectors)
        candidates = texts if self.with_texts else None
        results = self.model.rerank(query, candidates, vectors=vectors, query_vector=self.model.encode_query(query))
        scores = [0.0] * len(texts)
        for result in results:
            scores[result.index] = result.score
        return Reranked(scores, self.model.reranker_input_length(query, len(texts)), encoded)


class NoLMReranker:
    """A checkpoint without its reranker branch: cosine, its rank prior and (``linear``) its linear feature
    term over the candidates' texts; no LM forward."""

    name = "resrank-nolm"
    uses_vectors = True

    def __init__(self, model, name: str = "resrank-nolm", linear: bool = True):
        self.model = model
        self.name = name
        self.linear = linear

    def rerank(self, query: str, texts: list[str], vectors: np.ndarray | None) -> Reranked:
        vectors, encoded = _stored_or_encoded(self.model, texts, vectors)
        with torch.inference_mode():
            scores = self.model.scores_without_lm(torch.from_numpy(self.model.encode_query(query))[None], [torch.from_numpy(vectors)],
                                                  queries=[query], texts=[texts], linear=self.linear)[0]
        return Reranked([float(s) for s in scores], 0, encoded)


def feature_scorer(model):
    """The no-LM feature scorer to compare ``model`` with: a feature checkpoint that runs no LM is its own;
    for one that runs its LM, the packaged default's (loaded without its LM), which must share its encoder."""
    if not model.runs_lm and model.linear_scorer is not None:
        return model
    from resrank_rag.model import DEFAULT_MODEL, ResRank

    default = ResRank.from_pretrained(DEFAULT_MODEL, lm=False, warm_start=False)
    if default.linear_scorer is None:
        raise ValueError(f"the packaged {DEFAULT_MODEL} has no linear feature scorer to compare with")
    if default.encoder_fingerprint != model.encoder_fingerprint:
        raise ValueError(f"-r features compares with {DEFAULT_MODEL}'s feature scorer, whose encoder differs from "
                         f"{model.name}'s; its stored vectors would not match")
    return default


class DenseReranker:
    """Cosine between the query's encoder vector and each stored passage vector."""

    name = "dense"
    uses_vectors = True

    def __init__(self, model):
        self.model = model

    def rerank(self, query: str, texts: list[str], vectors: np.ndarray | None) -> Reranked:
        vectors, encoded = _stored_or_encoded(self.model, texts, vectors)
        scores = vectors @ self.model.encode_query(query)
        return Reranked([float(s) for s in scores], 0, encoded)


class _TextLM:
    """Shared plumbing of the fulltext baselines: chat formatting and passage truncation."""

    uses_vectors = False

    def __init__(self, lm, tokenizer, passage_tokens: int = 100):
        self.lm = lm.eval()
        self.tokenizer = tokenizer
        self.passage_tokens = passage_tokens

    def truncate(self, text: str) -> str:
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=self.passage_tokens).input_ids
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt_ids(self, system: str, user: str, answer_prefix: str = "") -> list[int]:
        if self.tokenizer.chat_template:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        else:
            ids = self.tokenizer(f"{system}\n{user}\nAnswer: ", add_special_tokens=True).input_ids
        return ids + self.tokenizer(answer_prefix, add_special_tokens=False).input_ids

    def token_id(self, text: str) -> int:
        return self.tokenizer(text, add_special_tokens=False).input_ids[0]

    @torch.inference_mode()
    def last_logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Next-token logits after each row (right-padded batch, read at each row's last real token)."""
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        hidden = self.lm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(rows)), torch.tensor([len(row) - 1 for row in rows])]
        return self.lm.get_output_embeddings()(last).float()  # vocabulary logits at one position per row only


class FulltextListwiseReranker(_TextLM):
    """FIRST-style listwise reranking: the LM reads labelled passages and the logits of the first
    identifier token rank the window in one forward; windows slide from the bottom of the list up."""

    name = "fulltext-listwise"
    SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query."

    def __init__(self, lm, tokenizer, passage_tokens: int = 100, window: int = 20, stride: int = 10):
        super().__init__(lm, tokenizer, passage_tokens)
        if not 1 <= stride <= window <= len(LABELS):
            raise ValueError(f"need 1 <= stride <= window <= {len(LABELS)}, got window={window}, stride={stride}")
        self.window, self.stride = window, stride
        self.label_ids = [self.token_id(label) for label in LABELS]

    def window_ids(self, query: str, passages: list[str]) -> list[int]:
        n = len(passages)
        listing = "\n".join(f"[{LABELS[i]}] {p}" for i, p in enumerate(passages))
        user = (
            f"I will provide you with {n} passages, each indicated by an alphabetical identifier []. "
            f"Rank the passages based on their relevance to the search query: {query}.\n\n{listing}\n\n"
            f"Search Query: {query}.\nRank the {n} passages above based on their relevance to the search query. "
            "List them using identifiers in descending order of relevance, e.g. [A] > [B]. Only respond with the ranking."
        )
        return self.prompt_ids(self.SYSTEM, user, answer_prefix="[")

    def rerank(self, query: str, texts: list[str], vectors: np.ndarray | None = None) -> Reranked:
        passages = [self.truncate(t) for t in texts]
        order = list(range(len(texts)))
        tokens = 0
        end = len(order)
        while end > 0:
            start = max(0, end - self.window)
            chunk = order[start:end]
            ids = self.window_ids(query, [passages[i] for i in chunk])
            tokens += len(ids)
            logits = self.last_logits([ids])[0, self.label_ids[: len(chunk)]]
            ranked = torch.argsort(-logits, stable=True).tolist()
            order[start:end] = [chunk[i] for i in ranked]
            if start == 0:
                break
            end -= self.stride
        scores = [0.0] * len(texts)
        for rank, index in enumerate(order):
            scores[index] = float(len(order) - rank)
        return Reranked(scores, tokens, 0)


class PointwiseReranker(_TextLM):
    """The LM judges each passage alone; score = logit("Yes") - logit("No") of its first answer token."""

    name = "pointwise"
    SYSTEM = "You judge whether a passage answers a search query."

    def __init__(self, lm, tokenizer, passage_tokens: int = 100, batch_size: int = 16):
        super().__init__(lm, tokenizer, passage_tokens)
        self.batch_size = batch_size
        self.yes, self.no = self.token_id("Yes"), self.token_id("No")

    def rerank(self, query: str, texts: list[str], vectors: np.ndarray | None = None) -> Reranked:
        rows = [
            self.prompt_ids(self.SYSTEM, f"Query: {query}\nPassage: {self.truncate(t)}\nIs the passage relevant to the query? Answer Yes or No.")
            for t in texts
        ]
        scores: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            logits = self.last_logits(rows[start : start + self.batch_size])
            scores.extend(float(s) for s in logits[:, self.yes] - logits[:, self.no])
        return Reranked(scores, sum(len(r) for r in rows), 0)


def build_rerankers(names: list[str], model, lm_and_tokenizer=None, passage_tokens: int = 100, window: int = 20, stride: int = 10):
    """Rerankers by name. The fulltext baselines load ``model.config.reranker`` with its LM head
    (the same LM ResRank uses) unless ``lm_and_tokenizer`` is given."""
    unknown = [n for n in names if n not in RERANKERS]
    if unknown:
        raise ValueError(f"unknown reranker(s) {unknown}; choose from {', '.join(RERANKERS)}")
    if lm_and_tokenizer is None and {"fulltext-listwise", "pointwise"} & set(names):
        from resrank_rag.backbones import load_reranker

        lm_and_tokenizer = load_reranker(model.config.reranker, causal_lm=True)
    built = []
    for name in names:
        if name == "resrank":
            built.append(ResRankReranker(model))
        elif name == "resrank-vectors":
            built.append(ResRankReranker(model, "resrank-vectors", with_texts=False))
        elif name == "resrank-nolm":
            built.append(NoLMReranker(model))
        elif name == "features":
            built.append(NoLMReranker(feature_scorer(model), "features"))
        elif name == "prior":
            built.append(NoLMReranker(model, "prior", linear=False))
        elif name == "dense":
            built.append(DenseReranker(model))
        elif name == "fulltext-listwise":
            built.append(FulltextListwiseReranker(*lm_and_tokenizer, passage_tokens, window, stride))
        else:
            built.append(PointwiseReranker(*lm_and_tokenizer, passage_tokens))
    return built
