"""Read .txt/.md/.jsonl files into Documents and chunk long texts into overlapping word windows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from resrank_rag.jsonl import read_jsonl

DEFAULT_CHUNK_WORDS = 180
"""About 240 MiniLM tokens: a chunk fits the encoder's 256-token window whole."""
DEFAULT_OVERLAP_WORDS = 30
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    """A document (or chunk) to index: a caller-chosen unique id, its text, and JSON-serialisable metadata."""

    id: str
    text: str
    metadata: dict = field(default_factory=dict)


def chunk_text(text: str, chunk_size: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_OVERLAP_WORDS) -> list[str]:
    """``text`` (stripped) if it has at most ``chunk_size`` words, else windows sharing ``overlap`` words."""
    if chunk_size < 1 or not 0 <= overlap < chunk_size:
        raise ValueError(f"need chunk_size >= 1 and 0 <= overlap < chunk_size, got {chunk_size} and {overlap}")
    words = text.split()
    if len(words) <= chunk_size:
        return [text.strip()] if words else []
    step = chunk_size - overlap
    starts = range(0, len(words) - overlap, step)
    return [" ".join(words[start : start + chunk_size]) for start in starts]


def chunk_document(
    document: Document, chunk_size: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_OVERLAP_WORDS
) -> list[Document]:
    """The document itself when it fits one chunk, else chunks with ids ``<id>#<n>`` (n from 0).

    Each chunk's metadata adds ``source`` (the document id) and ``chunk`` (n). A document without words
    has no chunks.
    """
    pieces = chunk_text(document.text, chunk_size, overlap)
    if len(pieces) <= 1:
        return [Document(document.id, piece, document.metadata) for piece in pieces]
    return [
        Document(f"{document.id}#{n}", piece, {**document.metadata, "source": document.id, "chunk": n})
        for n, piece in enumerate(pieces)
    ]


def _jsonl_documents(path: Path) -> Iterator[Document]:
    """BEIR corpus lines {"_id", "title", "text"} or {"id", "text", "metadata"}."""
    for number, row in read_jsonl(path):
        doc_id = row.get("_id", row.get("id")) if isinstance(row, dict) else None
        if doc_id is None or not isinstance(row.get("text"), str):
            raise ValueError(f'{path}:{number} needs {{"_id", "title", "text"}} or {{"id", "text", "metadata"}}')
        metadata = dict(row.get("metadata") or {})
        title = row.get("title") or ""
        if title:
            metadata.setdefault("title", title)
        text = f"{title} {row['text']}".strip()
        yield Document(str(doc_id), text, metadata)


def read_documents(path: str | Path) -> Iterator[Document]:
    """Documents from a .jsonl file, a .txt/.md file, or a folder searched recursively for them.

    A text file becomes one document whose id is its path relative to the folder given.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a folder of .txt/.md/.jsonl files or one such file")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    for file in files:
        suffix = file.suffix.lower()
        if suffix == ".jsonl":
            yield from _jsonl_documents(file)
        elif suffix in TEXT_SUFFIXES:
            relative = file.relative_to(base).as_posix()
            yield Document(relative, file.read_text(encoding="utf-8", errors="replace"), {"path": relative})
        elif not path.is_dir():
            raise ValueError(f"{file} is not .txt, .md or .jsonl")


def load_chunks(
    path: str | Path, chunk_size: int = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_OVERLAP_WORDS
) -> list[Document]:
    """Every document under ``path``, chunked; raises on duplicate ids so nothing is silently overwritten."""
    chunks, seen = [], set()
    for document in read_documents(path):
        for chunk in chunk_document(document, chunk_size, overlap):
            if chunk.id in seen:
                raise ValueError(f"document id {chunk.id!r} occurs twice under {path}; ids must be unique")
            seen.add(chunk.id)
            chunks.append(chunk)
    return chunks
