"""A tiny randomly initialised ResRank for fast tests (ours and downstream integrations')."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from resrank_rag import backbones
from resrank_rag.config import ResRankConfig
from resrank_rag.model import ResRank

_SAVED_ENCODERS = tempfile.TemporaryDirectory(prefix="resrank-tiny-")
"""Each tiny BERT saved once per process (removed at exit), so the encoder loads as a real folder does."""


def tiny_resrank(seed: int = 0, encoder_dim: int = 32, reranker_dim: int = 48, **overrides) -> ResRank:
    """A 2-layer BERT encoder (a SentenceTransformer over it, with the config's pooling and prefixes) and a
    2-layer Llama reranker, both with the packaged MiniLM tokenizer.

    Builds in well under a second; weights are random (seeded), so rankings are meaningless but
    every code path of the real model runs. ``overrides`` go to ``ResRankConfig``.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(backbones.resolve(backbones.MINILM_ID))
    vocab = len(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = BertModel(
            BertConfig(
                vocab_size=vocab, hidden_size=encoder_dim, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=2 * encoder_dim, max_position_embeddings=128,
            )
        )
        reranker = LlamaModel(
            LlamaConfig(
                vocab_size=vocab, hidden_size=reranker_dim, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=2 * reranker_dim, max_position_embeddings=1024,
            )
        )
    settings = dict(
        name="tiny-resrank", encoder="tiny-bert", reranker="tiny-llama",
        encoder_weights="full", reranker_weights="full", max_passage_tokens=64,
    )
    settings.update(overrides)
    config = ResRankConfig(**settings)
    folder = Path(_SAVED_ENCODERS.name) / f"bert-{encoder_dim}-seed{seed}"
    if not folder.exists():
        encoder.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    sentence_encoder = backbones.load_encoder(str(folder), config.pooling, config.max_passage_tokens,
                                              config.query_prefix, config.passage_prefix)
    return ResRank(config, sentence_encoder, reranker, tokenizer)


def perturb_heads(model: ResRank, seed: int = 1, scale: float = 0.5) -> None:
    """Give the zero-initialised residual heads random non-zero weights, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (model.passage_head, model.query_head):
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * scale)
            head.bias.copy_(torch.randn(head.bias.shape, generator=generator) * scale)
