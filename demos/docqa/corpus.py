"""Turn a folder of documents (.md .txt .jsonl .pdf .docx .html) or a BEIR corpus into indexable chunks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from resrank_rag.documents import SUFFIXES, ReadReport, chunk_document, read_documents
from resrank_rag.index import Document

DEMOS = Path(__file__).resolve().parents[1]
CHECKOUT = DEMOS.parent
SHIPPED_TOPICS = DEMOS / "docs_corpus" / "python_topics"


def folder_documents(path: str | Path, report: ReadReport | None = None) -> Iterator[Document]:
    """Documents from one file or every supported file under a folder (``resrank_rag.documents.read_documents``):
    ids are paths relative to it; files that cannot be read are reported (in ``report``) and skipped."""
    return read_documents(path, report if report is not None else ReadReport())


def beir_documents(folder: str | Path, limit: int | None = None) -> Iterator[Document]:
    """The first ``limit`` passages of a BEIR ``corpus.jsonl`` (e.g. ../shared/data/scifact)."""
    corpus = Path(folder) / "corpus.jsonl"
    if not corpus.exists():
        raise FileNotFoundError(f"{corpus} not found; --data needs a BEIR folder holding corpus.jsonl")
    with open(corpus, encoding="utf-8") as handle:
        for line in islice((line for line in handle if line.strip()), limit):
            row = json.loads(line)
            title = row.get("title") or ""
            yield Document(str(row["_id"]), f"{title}\n{row['text']}".strip(), {"title": title or str(row["_id"])})


def chunks_of(documents: Iterator[Document], prefix: str = "") -> list[Document]:
    """Chunk documents (about 180 words each); every chunk after the first starts with its title."""
    chunks = []
    for document in documents:
        document = dataclasses.replace(document, id=prefix + document.id)
        for chunk in chunk_document(document):
            title = chunk.metadata.get("title", "")
            text = chunk.text if chunk.metadata.get("chunk", 0) == 0 else f"{title}\n{chunk.text}"
            chunks.append(Document(chunk.id, text, chunk.metadata))
    return chunks


def shipped_chunks() -> list[Document]:
    """The demo's own documents: this project's README and docs, and CPython's documentation topics."""
    project = [CHECKOUT / "README.md", *sorted((CHECKOUT / "docs").glob("*.md"))]
    documents = []
    for file in project:
        relative = file.relative_to(CHECKOUT).as_posix()
        for d in read_documents(file) if file.exists() else []:
            documents.append(dataclasses.replace(d, id=relative, metadata={**d.metadata, "source": relative, "path": relative}))
    return chunks_of(iter(documents), "resrank-rag/") + chunks_of(folder_documents(SHIPPED_TOPICS), "python/")
