"""Learning from users: 👍/👎 on shown passages (``store``), turned into training lists by ``resrank adapt
--feedback`` (``resrank_rag.adapt.feedback``), or used directly by the no-LM ``memory`` reranker."""

from __future__ import annotations

import hashlib

from resrank_rag.feedback.store import FeedbackError, FeedbackList, FeedbackStore, ShownItem, read_feedback, write_jsonl

__all__ = ["FeedbackError", "FeedbackList", "FeedbackStore", "ShownItem", "model_fingerprint", "read_feedback",
           "write_jsonl"]


def model_fingerprint(model) -> str:
    """A short id of what ranks: the checkpoint's name and its reranker-side weights (heads, prior, features, LoRA,
    not the LM backbone or the encoder), so feedback names the model that ordered the list."""
    digest = hashlib.sha256(model.name.encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("encoder.") or (name.startswith("reranker.") and "lora_" not in name):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
