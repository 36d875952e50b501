"""Turn a folder of documents (.md, .txt, .jsonl, .html, .pdf) or a BEIR corpus into indexable chunks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from itertools import islice
from pathlib import Path

from resrank_rag.documents import chunk_document, read_documents
from resrank_rag.index import Document

DEMOS = Path(__file__).resolve().parents[1]
CHECKOUT = DEMOS.parent
SHIPPED_TOPICS = DEMOS / "docs_corpus" / "python_topics"
SUFFIXES = (".md", ".txt", ".jsonl", ".html", ".htm", ".pdf")


class _TextOfHtml(HTMLParser):
    """Visible text and <title> of an HTML page (scripts and styles dropped)."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        if tag in ("p", "div", "li", "br", "h1", "h2", "h3", "h4", "tr", "section", "article"):
            self.parts.append("\n")
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data.strip()
        elif not self._skip:
            self.parts.append(data)


def html_text(markup: str) -> tuple[str, str]:
    """(title, visible text) of an HTML document."""
    parser = _TextOfHtml()
    parser.feed(markup)
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return parser.title, re.sub(r"\n\s*\n+", "\n\n", text).strip()


def pdf_text(path: Path) -> str:
    """Text of every page of a PDF (needs the ``pypdf`` package)."""
    try:
        from pypdf import PdfReader
    except ImportError:
        raise ImportError(f"reading {path} needs pypdf: pip install pypdf (or pip install -e '.[demo]')") from None
    return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def title_of(text: str, fallback: str) -> str:
    """The first Markdown heading, else the first non-empty line if short, else ``fallback``."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            heading = line.lstrip("#").strip()
            return heading if line.startswith("#") or len(heading) <= 80 else fallback
    return fallback


def _file_documents(file: Path, base: Path) -> Iterator[Document]:
    relative = file.relative_to(base).as_posix()
    suffix = file.suffix.lower()
    if suffix in (".md", ".txt", ".jsonl"):
        for document in read_documents(file):
            doc_id = relative if suffix != ".jsonl" else document.id
            title = document.metadata.get("title") or title_of(document.text, file.stem)
            yield Document(doc_id, document.text, {**document.metadata, "path": relative, "title": title})
    elif suffix in (".html", ".htm"):
        title, text = html_text(file.read_text(encoding="utf-8", errors="replace"))
        yield Document(relative, text, {"path": relative, "title": title or file.stem})
    elif suffix == ".pdf":
        text = pdf_text(file)
        yield Document(relative, text, {"path": relative, "title": title_of(text, file.stem)})


def folder_documents(path: str | Path) -> Iterator[Document]:
    """Documents from one file or every supported file under a folder; ids are paths relative to it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a folder of {', '.join(SUFFIXES)} files")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    for file in files:
        yield from _file_documents(file, base)


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
        document = Document(prefix + document.id, document.text, document.metadata)
        for chunk in chunk_document(document):
            title = chunk.metadata.get("title", "")
            text = chunk.text if chunk.metadata.get("chunk", 0) == 0 else f"{title}\n{chunk.text}"
            chunks.append(Document(chunk.id, text, chunk.metadata))
    return chunks


def shipped_chunks() -> list[Document]:
    """The demo's own documents: this project's README and docs, and CPython's documentation topics."""
    project = [CHECKOUT / "README.md", *sorted((CHECKOUT / "docs").glob("*.md"))]
    documents = [d for file in project if file.exists() for d in _file_documents(file, CHECKOUT)]
    return chunks_of(iter(documents), "resrank-rag/") + chunks_of(folder_documents(SHIPPED_TOPICS), "python/")
