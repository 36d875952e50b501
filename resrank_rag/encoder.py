"""The encoder is a sentence-transformers ``SentenceTransformer``. This module holds only what ResRank adds
to it: loading with the checkpoint's pooling and prefixes (as ST prompts), texts cleaned before its tokenizer
sees them, a differentiable forward for joint training, the fingerprint that keys stored vectors, and the
Hugging Face backbone that LoRA wraps."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from resrank_rag.peft_adapters import is_peft

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from resrank_rag.config import ResRankConfig

QUERY = "query"
DOCUMENT = "document"
"""The ST prompt names (and tasks) of queries and passages: ``encode_query`` and ``encode_document`` use them."""
POOLING_MODES = {"mean": "mean", "last": "lasttoken", "cls": "cls"}
"""``ResRankConfig.pooling`` -> the pooling mode of ST's ``Pooling`` module."""

CHARS_PER_TOKEN_LIMIT = 32
"""Texts longer than max_tokens * this many characters are cut before tokenising, so a huge passage
costs neither time nor memory; the cut keeps far more text than the token window can hold in practice."""


def load_sentence_transformer(
    path: str, pooling: str, max_tokens: int, query_prefix: str = "", passage_prefix: str = ""
) -> SentenceTransformer:
    """``path`` (a folder or hub id, already resolved) as a SentenceTransformer on the CPU: a
    sentence-transformers model with its own modules (whose pooling must be ``pooling``), or a plain
    Hugging Face model with ``pooling`` and L2 normalisation; the prefixes become its query and document prompts."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from sentence_transformers.util import is_sentence_transformer_model

    if is_sentence_transformer_model(path):
        encoder = SentenceTransformer(path, device="cpu")
        _check_pooling(encoder, pooling, path)
        _warn_about_unused_prompts(encoder, query_prefix, passage_prefix, path)
    else:
        transformer = Transformer(path)
        pool = Pooling(transformer.get_embedding_dimension(), POOLING_MODES[pooling])
        encoder = SentenceTransformer(modules=[transformer, pool, Normalize()], device="cpu")
    if not isinstance(encoder[len(encoder) - 1], Normalize):  # ResRank scores by cosine: unit vectors
        encoder.append(Normalize())
    encoder.max_seq_length = max_tokens
    encoder.prompts = {QUERY: query_prefix, DOCUMENT: passage_prefix}
    encoder.default_prompt_name = None
    tokenizer = encoder.tokenizer
    if tokenizer.pad_token is None:  # decoder embedders often have none; batches need one
        tokenizer.pad_token = tokenizer.eos_token
    return encoder


def _check_pooling(encoder: SentenceTransformer, pooling: str, path: str) -> None:
    modes = [module.pooling_mode for module in encoder if hasattr(module, "pooling_mode")]
    if modes and modes[0] != POOLING_MODES[pooling]:
        by_mode = {mode: name for name, mode in POOLING_MODES.items()}
        fix = f"set pooling={by_mode[modes[0]]!r}" if modes[0] in by_mode else "use another encoder"
        raise ValueError(
            f"the encoder {path} pools by {modes[0]!r} (its Pooling module), but the ResRank config says "
            f"pooling={pooling!r}; {fix} in the config"
        )


def _warn_about_unused_prompts(encoder: SentenceTransformer, query_prefix: str, passage_prefix: str, path: str) -> None:
    own = {name: prompt for name, prompt in encoder.prompts.items() if prompt}
    ours = {QUERY: query_prefix, DOCUMENT: passage_prefix}
    ignored = {name: prompt for name, prompt in own.items() if name in ours and ours[name] != prompt}
    if ignored:
        warnings.warn(
            f"the encoder {path} comes with the prompts {ignored}, which the ResRank config's query_prefix and "
            "passage_prefix replace; copy them into the config to use them",
            stacklevel=4,
        )


def clean_texts(texts: Sequence[str], max_tokens: int) -> list[str]:
    """Cut texts far beyond the token window (with a warning) and replace characters UTF-8 cannot
    encode (lone surrogates, e.g. from undecodable bytes) with U+FFFD, which tokenizers reject otherwise."""
    limit = max_tokens * CHARS_PER_TOKEN_LIMIT
    long = [len(text) for text in texts if len(text) > limit]
    if long:
        warnings.warn(
            f"{len(long)} text(s) of up to {max(long):,} characters exceed the {max_tokens}-token window; "
            "only their beginning is used. Chunk long documents before indexing.",
            stacklevel=4,
        )
    return [_encodable(text[:limit]) for text in texts]


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


def encode(
    encoder: SentenceTransformer, texts: Sequence[str], task: str, batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> np.ndarray:
    """(N, dim) float32 vectors of ``texts`` as queries or passages (``task``), through ``encode_query`` or
    ``encode_document``; a progress bar by default only beyond four batches. Texts that fit one batch (a
    query, say) go straight through the encoder's ``preprocess`` and forward: the same vectors, without the
    1-1.5 ms per call that ``encode`` spends checking every parameter's device and setting eval mode."""
    texts = clean_texts(texts, encoder.max_seq_length)
    if not texts:
        return np.zeros((0, encoder.get_embedding_dimension()), dtype=np.float32)
    if len(texts) <= batch_size and not show_progress_bar:
        with torch.inference_mode():
            return _forward(encoder, texts, task).float().cpu().numpy()
    if show_progress_bar is None:
        show_progress_bar = len(texts) > 4 * batch_size
    method = encoder.encode_query if task == QUERY else encoder.encode_document
    return method(texts, batch_size=batch_size, show_progress_bar=show_progress_bar).astype(np.float32, copy=False)


def embed_with_grad(encoder: SentenceTransformer, texts: Sequence[str], task: str) -> torch.Tensor:
    """Differentiable (B, dim) vectors of ``texts`` as queries or passages (``task``): what ``encode``
    computes, with the autograd graph kept for training (ST's ``encode`` runs under inference mode)."""
    return _forward(encoder, clean_texts(texts, encoder.max_seq_length), task)


def _forward(encoder: SentenceTransformer, texts: list[str], task: str) -> torch.Tensor:
    """One batch through ST's ``preprocess`` (with the task's prompt) and the encoder's modules."""
    from sentence_transformers.util import batch_to_device

    features = encoder.preprocess(texts, prompt=encoder.prompts[task], task=task)
    return encoder(batch_to_device(features, encoder.device), task=task)["sentence_embedding"]


def fingerprint(encoder: SentenceTransformer, config: ResRankConfig) -> str:
    """Stable id of what the encoder computes (16 hex digits), keying embedding caches and vector stores: the
    configured name, pooling, window and prefixes, plus the backbone's weights when they are not the named ones'."""
    c = config
    digest = hashlib.sha256(json.dumps([c.encoder, c.pooling, c.max_passage_tokens, c.query_prefix, c.passage_prefix]).encode())
    weights = backbone(encoder)
    if c.encoder_weights == "full" or is_peft(weights):
        for key, value in sorted(weights.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def backbone(encoder: SentenceTransformer) -> nn.Module:
    """The Hugging Face model inside the encoder's first (Transformer) module, or its peft wrapper."""
    return encoder[0].model


def set_backbone(encoder: SentenceTransformer, module: nn.Module) -> None:
    """Put ``module`` (e.g. the backbone with LoRA adapters, or merged) in place of the encoder's backbone."""
    encoder[0].model = module
