"""EmbeddingCache: passage vectors keyed by (encoder fingerprint, text hash), so each text is encoded once."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from resrank_rag.backbones import cache_dir


class EmbeddingCache:
    """Encodes only the texts it has not seen with this model's encoder; stores float32 vectors in SQLite.

    ``path=None`` uses ``<user cache>/embeddings/<encoder fingerprint>.sqlite``; ``":memory:"`` keeps
    vectors in this process only. Safe to share between threads.
    """

    def __init__(self, model, path: str | Path | None = None):
        self.model = model
        if path is None:
            path = cache_dir() / "embeddings" / f"{model.encoder_fingerprint}.sqlite"
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._db.commit()
        self.encoded_count = 0
        """How many texts this cache has sent to the encoder (misses), for tests and benchmarks."""

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model.encoder_fingerprint}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors, None where a text has not been encoded yet."""
        keys = [self._key(t) for t in texts]
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk))
        return [np.frombuffer(found[k], dtype=np.float32).copy() if k in found else None for k in keys]

    def encode(self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None) -> np.ndarray:
        """(N, dim) vectors for ``texts``, encoding and storing only the misses."""
        texts = list(texts)
        vectors = self.get(texts)
        missing = sorted({t for t, v in zip(texts, vectors) if v is None})
        if missing:
            fresh = self.model.encode(missing, batch_size=batch_size, show_progress_bar=show_progress_bar)
            self.encoded_count += len(missing)
            with self._lock:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [(self._key(t), v.astype(np.float32).tobytes()) for t, v in zip(missing, fresh)],
                )
                self._db.commit()
            by_text = dict(zip(missing, fresh))
            vectors = [by_text[t] if v is None else v for t, v in zip(texts, vectors)]
        if not texts:
            return np.zeros((0, self.model.embedding_dim), dtype=np.float32)
        return np.stack(vectors).astype(np.float32)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
