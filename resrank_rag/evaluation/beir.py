"""Read a BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv, optional runs/bm25.<split>.trec."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

Run = dict[str, list[tuple[str, float]]]
"""A ranking per query id: (doc id, score) pairs, best first."""


@dataclass
class BeirDataset:
    """One split of a BEIR folder. ``corpus`` maps doc id to the text we index (title and text joined)."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    shipped_run: Run | None = None
    folder: Path | None = None
    split: str | None = None

    def named_run(self, name: str) -> Run:
        """``runs/<name>.<split>.trec`` from this dataset's folder (e.g. ``splade``), read on first use."""
        if name == "bm25" and self.shipped_run is not None:
            return self.shipped_run
        cache = self.__dict__.setdefault("_runs", {})
        if name not in cache:
            path = None if self.folder is None else self.folder / "runs" / f"{name}.{self.split}.trec"
            if path is None or not path.exists():
                raise FileNotFoundError(f"{self.name} has no runs/{name}.{self.split}.trec for the run:{name} source")
            cache[name] = read_trec_run(path)
        return cache[name]

    def limit_queries(self, max_queries: int | None) -> BeirDataset:
        """The first ``max_queries`` judged queries (in file order), for quick or costly runs."""
        if max_queries is None or max_queries >= len(self.queries):
            return self
        keep = list(self.queries)[:max_queries]
        return BeirDataset(
            self.name,
            self.corpus,
            {q: self.queries[q] for q in keep},
            {q: self.qrels[q] for q in keep},
            None if self.shipped_run is None else {q: self.shipped_run.get(q, []) for q in keep},
            self.folder,
            self.split,
        )


def passage_text(row: dict) -> str:
    """Title and text joined by a space, the BEIR convention for dense and BM25 baselines."""
    return f"{row.get('title') or ''} {row.get('text') or ''}".strip()


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query-id, corpus-id, score per line (a header line first, as BEIR writes it)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def read_trec_run(path: Path) -> Run:
    """A TREC run file (qid Q0 docid rank score tag), ordered by rank within each query."""
    ranked: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 5:
                raise ValueError(f"{path}:{number} is not a TREC run line (qid Q0 docid rank score tag)")
            ranked.setdefault(parts[0], []).append((int(parts[3]), parts[2], float(parts[4])))
    return {qid: [(doc, score) for _, doc, score in sorted(rows)] for qid, rows in ranked.items()}


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load one split; only queries judged in ``qrels/<split>.tsv`` are kept."""
    folder = Path(folder)
    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / needed).exists():
            raise FileNotFoundError(f"{folder / needed} is missing: --data must be a BEIR-layout folder with split {split!r}")
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    queries = {row["_id"]: row["text"] for row in read_jsonl(folder / "queries.jsonl") if row["_id"] in qrels}
    qrels = {qid: qrels[qid] for qid in queries}
    corpus = {row["_id"]: passage_text(row) for row in read_jsonl(folder / "corpus.jsonl")}
    run_path = folder / "runs" / f"bm25.{split}.trec"
    shipped = read_trec_run(run_path) if run_path.exists() else None
    return BeirDataset(folder.name, corpus, queries, qrels, shipped, folder, split)
