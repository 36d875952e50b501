"""ServeSettings: every knob of the service, with defaults and one place that checks them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from resrank_rag.model import DEFAULT_MODEL
from resrank_rag.precision import check_precision

SETTINGS_ENV = "RESRANK_SERVE_SETTINGS"
"""Environment variable that carries the settings (JSON) to each uvicorn worker process."""

CPU_BATCH_TOKENS = 512
"""Default position budget of one forward on a CPU: 11 lists of K = 20, 4 of K = 100. Measured on the
2-core CPU (int8 reranker, one torch thread, CPU time per list, table in docs/serving.md): K = 20 costs
82 ms alone, 49 ms in forwards of 8 lists (352 positions), 70 ms in one forward of 32 (1408); K = 100
costs 179 ms alone, 137 ms in forwards of 4 (496 positions), 193 ms in forwards of 8. Past a few hundred
positions the activations no longer fit the caches, and a wider forward costs more per list, not less."""
ACCELERATOR_BATCH_TOKENS = 16384
"""Default position budget of one forward on a GPU, where wider forwards keep getting cheaper per list."""


@dataclass
class ServeSettings:
    """Configuration of ``resrank serve``."""

    model: str = DEFAULT_MODEL
    """Checkpoint folder, packaged name or Hugging Face id."""
    device: str | None = None
    precision: str = "auto"
    """The reranker LM's precision: auto, fp32, bf16, fp16 (CUDA) or int8 (CPU); docs/precision.md."""
    threads: int | None = None
    """torch intra-op threads per worker (None: torch's default, all cores)."""
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    """Worker processes, each holding its own copy of the model."""
    api_key: str | None = None
    """When set, every route but /health needs ``Authorization: Bearer <key>``."""

    max_batch: int = 32
    """Most lists (or embedding requests) grouped into one forward; 1 means one forward per request."""
    max_batch_tokens: int | None = None
    """Most reranker positions in one padded forward (lists x longest list). None: ``CPU_BATCH_TOKENS`` on a
    CPU, ``ACCELERATOR_BATCH_TOKENS`` on a GPU (``batch_tokens``)."""
    max_wait_ms: float = 2.0
    """How long the first request of a batch waits for company when nothing else is queued."""
    max_queue: int = 256
    """Requests waiting for a forward; beyond this the service answers 503 with Retry-After."""

    max_candidates: int = 1000
    """Most documents per rerank request and most inputs per embedding request."""
    max_chars: int = 2_000_000
    """Most characters of text in one request (query plus documents or inputs)."""
    max_body_mb: float = 64.0
    """Largest request body accepted, in MiB (stored vectors make bodies large)."""

    def __post_init__(self) -> None:
        for key in ("workers", "max_batch", "max_batch_tokens", "max_queue", "max_candidates", "max_chars"):
            value = getattr(self, key)
            if value is None and key == "max_batch_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        check_precision(self.precision)
        if self.max_wait_ms < 0 or self.max_body_mb <= 0:
            raise ValueError("max_wait_ms must be >= 0 and max_body_mb > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; give a real key or leave it unset")

    def batch_tokens(self, device) -> int:
        """The position budget of one forward on ``device``: ``max_batch_tokens``, or the device's default."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return CPU_BATCH_TOKENS if str(device).startswith("cpu") else ACCELERATOR_BATCH_TOKENS

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))
