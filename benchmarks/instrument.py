"""Instruments the benchmark scripts share: wall time per named part, and passages given to the encoder.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path`` and they
``from instrument import ...``.
"""

from __future__ import annotations

import time


def timed(totals: dict[str, float], name: str, function):
    """Wrap ``function`` so its wall time accumulates in ``totals[name]``."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return wrapper


class PassageCounter:
    """Replaces ``model.encode`` (the passage encoder; queries go through ``encode_query``) with a wrapper that
    counts the texts it is given in ``passages``."""

    def __init__(self, model):
        self.passages = 0
        encode = model.encode

        def counting_encode(texts, *args, **kwargs):
            self.passages += len(texts)
            return encode(texts, *args, **kwargs)

        model.encode = counting_encode
