"""Users' 👍/👎 on the passages an app showed them, stored durably in SQLite beside the index.

One *shown list* is what one user saw for one query: the chunk ids in the order shown, with each one's
first-stage rank. A *rating* is one user's 👍 (+1) or 👎 (-1) on one chunk of a list they were shown;
rating the same chunk again replaces the label, and 0 clears it. Nothing is deleted when chunks leave
the collection: ``resrank adapt --feedback`` drops the events of missing chunks when it trains.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from resrank_rag.jsonl import read_jsonl

SCHEMA = """
CREATE TABLE IF NOT EXISTS shown (
    list_id TEXT PRIMARY KEY, user TEXT NOT NULL, query TEXT NOT NULL, collection TEXT NOT NULL,
    items TEXT NOT NULL, time REAL NOT NULL, model TEXT NOT NULL, encoder TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    list_id TEXT NOT NULL REFERENCES shown(list_id), chunk_id TEXT NOT NULL, label INTEGER NOT NULL,
    time REAL NOT NULL, PRIMARY KEY (list_id, chunk_id)
);
"""
LABELS = {1: "up", -1: "down"}


class FeedbackError(PermissionError):
    """A rating the store refuses: unknown list, another user's list, or a chunk that list did not show."""


@dataclass(frozen=True)
class ShownItem:
    """One passage of a shown list: its chunk id, place on the page (1-based) and first-stage rank (1-based)."""

    chunk_id: str
    position: int
    first_stage_rank: int


@dataclass
class FeedbackList:
    """One shown list with its ratings (chunk id -> +1 or -1)."""

    list_id: str
    user: str
    query: str
    collection: str
    shown: list[ShownItem]
    ratings: dict[str, int] = field(default_factory=dict)
    time: float = 0.0
    model: str = ""
    """The fingerprint of the model that ranked the list (``ResRank.fingerprint``)."""
    encoder: str = ""
    """The encoder's fingerprint (its vectors' identity)."""

    def to_dict(self) -> dict:
        return {**asdict(self), "shown": [asdict(item) for item in self.shown]}

    @classmethod
    def from_dict(cls, row: dict, where: str = "") -> "FeedbackList":
        try:
            shown = [ShownItem(str(i["chunk_id"]), int(i["position"]), int(i["first_stage_rank"])) for i in row["shown"]]
            ratings = {str(k): int(v) for k, v in (row.get("ratings") or {}).items()}
            item = cls(str(row.get("list_id") or uuid.uuid4().hex), str(row.get("user", "")), str(row["query"]),
                       str(row.get("collection", "")), shown, ratings, float(row.get("time", 0.0)),
                       str(row.get("model", "")), str(row.get("encoder", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: a feedback row needs query, shown [{{chunk_id, position, first_stage_rank}}] "
                             f"and ratings {{chunk_id: 1 | -1}} ({error})") from None
        bad = [k for k, v in item.ratings.items() if v not in LABELS or k not in {s.chunk_id for s in shown}]
        if bad:
            raise ValueError(f"{where}: ratings {bad[:3]} must be 1 or -1 on a chunk id of the shown list")
        return item

    @property
    def events(self) -> int:
        return len(self.ratings)


class FeedbackStore:
    """A SQLite file of shown lists and ratings; safe to use from several threads of one process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record_shown(self, user: str, query: str, collection: str, shown: Sequence[ShownItem], *, model: str = "",
                     encoder: str = "") -> str:
        """Store what ``user`` was shown for ``query``; returns the list id that their ratings name."""
        if not shown:
            raise ValueError("a shown list needs at least one passage")
        list_id = uuid.uuid4().hex
        items = json.dumps([asdict(item) for item in shown])
        with self._lock:
            self._db.execute("INSERT INTO shown VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (list_id, user, query, collection, items, time.time(), model, encoder))
        return list_id

    def rate(self, list_id: str, user: str, chunk_id: str, label: int) -> None:
        """Record ``user``'s label (+1 👍, -1 👎, 0 to clear) on ``chunk_id`` of list ``list_id``.

        Raises FeedbackError unless that list was shown to this user and held that chunk."""
        if label not in (1, -1, 0):
            raise ValueError(f"label must be 1 (👍), -1 (👎) or 0 (clear), got {label!r}")
        with self._lock:
            row = self._db.execute("SELECT user, items FROM shown WHERE list_id = ?", (list_id,)).fetchone()
            if row is None or row[0] != user:  # the same answer for another user's list and a missing one
                raise FeedbackError(f"no list {list_id!r} was shown to user {user!r}; rate passages from your own answers")
            if chunk_id not in {item["chunk_id"] for item in json.loads(row[1])}:
                raise FeedbackError(f"chunk {chunk_id!r} was not shown in list {list_id!r}; only shown passages can be rated")
            if label == 0:
                self._db.execute("DELETE FROM ratings WHERE list_id = ? AND chunk_id = ?", (list_id, chunk_id))
            else:
                self._db.execute("INSERT OR REPLACE INTO ratings VALUES (?, ?, ?, ?)", (list_id, chunk_id, label, time.time()))

    def lists(self, rated_only: bool = True) -> list[FeedbackList]:
        """Every shown list (only those with a rating, unless ``rated_only`` is False), oldest first."""
        rated = " WHERE list_id IN (SELECT list_id FROM ratings)" if rated_only else ""
        with self._lock:
            shown = self._db.execute(f"SELECT * FROM shown{rated} ORDER BY time, list_id").fetchall()
            ratings = self._db.execute("SELECT list_id, chunk_id, label FROM ratings").fetchall()
        by_list: dict[str, dict[str, int]] = {}
        for list_id, chunk_id, label in ratings:
            by_list.setdefault(list_id, {})[chunk_id] = label
        out = [FeedbackList(list_id, user, query, collection, [ShownItem(**i) for i in json.loads(items)],
                            by_list.get(list_id, {}), at, model, encoder)
               for list_id, user, query, collection, items, at, model, encoder in shown]
        return [item for item in out if item.ratings or not rated_only]

    def ratings_of(self, user: str, list_id: str) -> dict[str, int]:
        """The labels ``user`` gave on one of their lists (chunk id -> +1/-1)."""
        with self._lock:
            rows = self._db.execute("SELECT r.chunk_id, r.label FROM ratings r JOIN shown s USING (list_id) "
                                    "WHERE list_id = ? AND s.user = ?", (list_id, user)).fetchall()
        return dict(rows)

    def ratings_version(self) -> tuple:
        """Changes whenever a rating is added, changed or removed: what a reader of ``lists()`` caches on."""
        with self._lock:
            return tuple(self._db.execute("SELECT COUNT(*), COALESCE(MAX(time), 0), COALESCE(SUM(label), 0) "
                                          "FROM ratings").fetchone())

    def count(self) -> int:
        """How many ratings are stored."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]

    def export_jsonl(self, path: str | Path) -> int:
        """Write the rated lists as JSONL (one ``FeedbackList.to_dict`` a line); returns how many."""
        return write_jsonl(path, self.lists())


def write_jsonl(path: str | Path, lists: Iterable[FeedbackList]) -> int:
    lists = list(lists)
    Path(path).write_text("".join(json.dumps(item.to_dict(), ensure_ascii=False) + "\n" for item in lists), encoding="utf-8")
    return len(lists)


def read_feedback(path: str | Path, rated_only: bool = True) -> list[FeedbackList]:
    """The rated lists of a feedback store (``.sqlite``/``.db``) or of a JSONL export (every shown list, rated
    or not, unless ``rated_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feedback file {path} not found: give the demo's feedback.sqlite or a JSONL export")
    with path.open("rb") as handle:
        is_sqlite = handle.read(16) == b"SQLite format 3\x00"
    if is_sqlite:
        with FeedbackStore(path) as store:
            return store.lists(rated_only)
    return [FeedbackList.from_dict(row, f"{path}:{number}") for number, row in read_jsonl(path)
            if isinstance(row, dict) and ((row.get("ratings") or {}) or not rated_only)]
