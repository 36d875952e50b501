"""The alignment stage: teach the reranker LM to read one projected passage vector, with no labels.

The reranker reads ``projector(v)`` at a single input position and predicts the passage's opening
tokens from it, teacher-forced (PE-Rank's and xRAG's stage 1). Only what the ranking stages also use
trains: the projector and LoRA on the LM. The LM's output embeddings turn its states into logits; a
backbone loaded without an LM head (``AutoModel``) reads out through its input embeddings, which is the
same matrix for tied-embedding models such as SmolLM2.
"""

from __future__ import annotations

import random

import torch
from torch import nn


class PassageSampler:
    """Distinct passage texts of some corpora; ``sample(step)`` is a pure function of (seed, step)."""

    def __init__(self, corpora: list[dict[str, str]], seed: int = 0):
        self.texts = sorted({text for corpus in corpora for text in corpus.values() if text.strip()})
        if not self.texts:
            raise ValueError("the alignment stage needs passages: the training datasets' corpora are empty")
        self.seed = seed

    def sample(self, step: int, count: int) -> list[str]:
        rng = random.Random(f"{self.seed}:align:{step}")
        return [self.texts[rng.randrange(len(self.texts))] for _ in range(count)]


def _readout(reranker: nn.Module) -> torch.Tensor:
    head = reranker.get_output_embeddings() if hasattr(reranker, "get_output_embeddings") else None
    return (head if head is not None else reranker.get_input_embeddings()).weight


def alignment_loss(model, vectors: torch.Tensor, texts: list[str], max_tokens: int = 24) -> torch.Tensor:
    """Mean cross-entropy of each passage's first ``max_tokens`` reranker tokens, each predicted from the
    projected vector and the tokens before it: input ``[projector(v), t_1 .. t_{n-1}]``, targets ``t_1 .. t_n``."""
    if max_tokens < 1:
        raise ValueError("alignment max_tokens must be at least 1")
    device, dtype = model.marker.device, model.marker.dtype
    with model._tokenizer_lock:
        ids = model.reranker_tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_tokens).input_ids
    keep = [i for i, row in enumerate(ids) if row]
    if not keep:
        raise ValueError("no alignment passage has a token")
    ids = [ids[i] for i in keep]
    vectors = nn.functional.normalize(vectors[keep].to(device=device, dtype=dtype), dim=-1)
    width = max(len(row) for row in ids)
    tokens = torch.zeros(len(ids), width, dtype=torch.long, device=device)
    targets = torch.full((len(ids), width), -100, dtype=torch.long, device=device)
    mask = torch.zeros(len(ids), width, dtype=torch.long, device=device)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.tensor(row, device=device)
        targets[i, : len(row)] = tokens[i, : len(row)]
        mask[i, : len(row)] = 1
    embed = model.reranker.get_input_embeddings()
    inputs = torch.cat([model.projector(vectors).unsqueeze(1), embed(tokens[:, :-1]).to(dtype)], dim=1)
    positions = torch.arange(width, device=device).unsqueeze(0).expand(len(ids), -1)
    hidden = model.reranker(inputs_embeds=inputs, attention_mask=mask, position_ids=positions).last_hidden_state
    chosen = targets != -100
    logits = hidden[chosen].float() @ _readout(model.reranker).float().T
    return nn.functional.cross_entropy(logits, targets[chosen])
