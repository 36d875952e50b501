"""The encoder's token window, for the requests that ask about it: TEI ``truncate: false`` (refuse a text
the window would cut, as TEI does) and Cohere ``max_tokens_per_doc`` (cut each document to that many tokens)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

from resrank_rag.encoder import CHARS_PER_TOKEN_LIMIT


class TokenWindow:
    """Counts and cuts tokens as the model's encoder sees them, with its own tokenizer copy (fast tokenizers
    are not safe to share with the model thread)."""

    def __init__(self, model):
        self.limit = int(model.config.max_passage_tokens)
        self._prefix = {"query": model.config.query_prefix, "passage": model.config.passage_prefix}
        self._tokenizer = copy.deepcopy(model.encoder.tokenizer)
        self._lock = threading.Lock()

    def first_over(self, texts: Sequence[str], kind: str) -> tuple[int, int] | None:
        """(position, tokens) of the first text whose encoding (prefix and special tokens included) the
        window would cut, None when every text fits. ``kind``: "query" or "passage"."""
        prefix, cut = self._prefix[kind], (self.limit + 1) * CHARS_PER_TOKEN_LIMIT
        with self._lock:
            for position, text in enumerate(texts):
                tokens = len(self._tokenizer(prefix + text[:cut])["input_ids"])
                if tokens > self.limit:
                    return position, tokens
        return None

    def cut(self, texts: Sequence[str], tokens: int) -> list[str]:
        """Each text cut after its first ``tokens`` tokens (no special tokens counted), at a character boundary."""
        if not getattr(self._tokenizer, "is_fast", False):
            raise ValueError("this encoder's tokenizer cannot map tokens to characters; leave max_tokens_per_doc out")
        with self._lock:
            encoded = self._tokenizer(
                list(texts), add_special_tokens=False, truncation=True, max_length=tokens, return_offsets_mapping=True
            )
        return [
            text if len(offsets) < tokens else text[: offsets[-1][1]] for text, offsets in zip(texts, encoded["offset_mapping"])
        ]
