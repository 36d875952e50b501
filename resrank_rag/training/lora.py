"""Wrap ResRank backbones with peft LoRA adapters (what ``save_pretrained`` then writes as adapters)."""

from __future__ import annotations

from resrank_rag.encoder import backbone, set_backbone
from resrank_rag.peft_adapters import is_peft
from resrank_rag.training.config import LoraSettings


def add_lora(model, parts: set[str], settings: LoraSettings) -> None:
    """Give the encoder's backbone and/or ``model.reranker`` LoRA adapters (unless they already have some)."""
    from peft import LoraConfig, get_peft_model

    def wrap(module, targets):
        if is_peft(module):
            return module
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=list(targets))
        try:
            return get_peft_model(module, config)
        except ValueError as error:
            raise ValueError(f"LoRA could not wrap {type(module).__name__} ({error}); set lora.*_targets to its module names") from None

    if "encoder" in parts:
        set_backbone(model.encoder, wrap(backbone(model.encoder), settings.encoder_targets))
    if "reranker" in parts:
        model.reranker = wrap(model.reranker, settings.reranker_targets)
