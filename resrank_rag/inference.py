"""Getting a loaded ResRank ready to serve: LoRA merged, the precision applied, one warm-up forward."""

from __future__ import annotations

import dataclasses

from resrank_rag.encoder import backbone, set_backbone
from resrank_rag.peft_adapters import is_peft
from resrank_rag.precision import apply_precision, auto_precision, resolve_precision

WARM_UP_QUERY = "warm-up query"
WARM_UP_PASSAGES = ("a first warm-up passage", "a second warm-up passage")


def prepare_for_inference(model, precision: str = "auto", merge_lora: bool = True, warm_start: bool = True):
    """``model`` (in place) with adapters merged, its reranker at ``precision`` and one warm-up call done."""
    if merge_lora:
        merge_adapters(model)
    concrete = resolve_precision(precision, model.device)  # checks the name on every model
    if model.reranker is not None:  # without its LM, a model has nothing that precision applies to
        apply_precision(model, auto_precision(model) if precision == "auto" else concrete)
    if warm_start:
        warm_up(model)
    return model


def merge_adapters(model) -> list[str]:
    """Fold LoRA adapters into the backbone weights (peft ``merge_and_unload``); returns the parts merged.

    The encoder fingerprint is computed before the merge and kept, so caches and vector stores built
    with the adapter model still match. A merged backbone is marked ``*_weights="full"`` in the config,
    so ``save_pretrained`` writes it out instead of silently dropping the adapter. Train from an
    unmerged model (``from_pretrained(..., merge_lora=False)``).
    """
    merged = []
    if is_peft(backbone(model.encoder)):
        model.encoder_fingerprint  # noqa: B018 - computed over the adapter weights, then kept
        set_backbone(model.encoder, backbone(model.encoder).merge_and_unload())
        merged.append("encoder")
    if is_peft(model.reranker):
        model.reranker = model.reranker.merge_and_unload()
        merged.append("reranker")
    if merged:
        model.config = dataclasses.replace(model.config, **{f"{part}_weights": "full" for part in merged})
        if model.reranker is not None:
            model._prefix_cache.clear()
    return merged


def warm_up(model) -> None:
    """One tiny rerank of texts (encoder and reranker both run), so the first user query does not pay
    for lazy initialisation: weights paged in from the memory map, allocator and kernel set-up."""
    model.rerank(WARM_UP_QUERY, list(WARM_UP_PASSAGES))
