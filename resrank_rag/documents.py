"""Read documents (.txt, .md, .jsonl, .pdf, .docx, .html) into Documents and chunk them into word windows.

PDF pages and DOCX/HTML headed sections are kept apart: a chunk never spans two, and its metadata says
which (``page`` or ``section``), beside ``source`` (the file) and ``title``. Access lists
(``allowed_groups``) come from a JSONL field, a sidecar file or the caller (see ``resrank_rag.access``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from resrank_rag.access import ACCESS_FIELD, check_access_list
from resrank_rag.jsonl import read_jsonl
from resrank_rag.readers import UnreadableFile, _short_line, read_docx, read_html, read_pdf

DEFAULT_CHUNK_WORDS = 180
"""About 240 MiniLM tokens: a chunk fits the encoder's 256-token window whole."""
DEFAULT_OVERLAP_WORDS = 30
TEXT_SUFFIXES = (".txt", ".md")
READERS = {".pdf": read_pdf, ".docx": read_docx, ".html": read_html, ".htm": read_html}
SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", *READERS)
ACCESS_SIDECAR = ".access.json"
"""``report.pdf.access.json`` sets the access list of ``report.pdf``; a folder's ``.access.json`` that of
every file in it and below (the nearest one wins): ``{"allowed_groups": ["hr", "managers"]}``."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    """A document (or chunk) to index: a caller-chosen unique id, its text, and JSON-serialisable metadata.

    ``sections`` optionally splits ``text`` into ``(text, metadata)`` pieces (pages, headed sections):
    chunks never span two pieces and add their piece's metadata. Build such a document with ``from_sections``.
    """

    id: str
    text: str
    metadata: dict = field(default_factory=dict)
    sections: tuple = ()

    @classmethod
    def from_sections(cls, id: str, sections: Iterable[tuple[str, dict]], metadata: dict | None = None) -> Document:  # noqa: A002
        """A document whose text is its non-empty sections, e.g. ``[("page one text", {"page": 1}), ...]``."""
        kept = tuple((text, dict(meta)) for text, meta in sections if text.strip())
        return cls(id, "\n\n".join(text for text, _ in kept), dict(metadata or {}), kept)


@dataclass(frozen=True)
class FileProblem:
    """A file that was skipped (``skipped``) or read only in part; ``kind``: encrypted, corrupt, empty,
    scanned or access (its access list is unreadable)."""

    path: str
    kind: str
    message: str
    skipped: bool

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}" + (" (skipped)" if self.skipped else "")


class DocumentError(ValueError):
    """A file that cannot be read, raised when ``read_documents`` is given no ``ReadReport``."""


class ReadReport:
    """What ``read_documents`` met: files read, problems (each also passed to ``echo`` as it happens)."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self.files = 0
        self.documents = 0
        self.other_files = 0
        self.problems: list[FileProblem] = []
        self.unread_ids: list[str] = []
        """Ids of documents in files that could not be read this time; ``sync(keep=...)`` keeps their chunks."""
        self._echo = echo or (lambda message: logger.warning("%s", message))

    def add(self, problem: FileProblem) -> None:
        self.problems.append(problem)
        self._echo(f"warning: {problem}")

    def summary(self) -> str:
        skipped = sum(p.skipped for p in self.problems)
        lines = [
            f"read {self.files} files into {self.documents} documents; {skipped} skipped, "
            f"{len(self.problems) - skipped} with warnings"
            + (f"; {self.other_files} files of other types ignored" if self.other_files else "")
        ]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


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

    Each chunk's metadata adds ``source`` (the document id) and ``chunk`` (n), and its section's metadata
    (``page`` or ``section``). A document without words has no chunks.
    """
    pieces = [
        (piece, meta)
        for text, meta in (document.sections or [(document.text, {})])
        for piece in chunk_text(text, chunk_size, overlap)
    ]
    if len(pieces) <= 1:
        return [Document(document.id, piece, {**document.metadata, **meta}) for piece, meta in pieces]
    return [
        Document(f"{document.id}#{n}", piece, {**document.metadata, **meta, "source": document.id, "chunk": n})
        for n, (piece, meta) in enumerate(pieces)
    ]


def _with_access(metadata: dict, row_groups, groups: list[str] | None, where: str) -> dict:
    if row_groups is not None:
        try:
            return {**metadata, ACCESS_FIELD: check_access_list(row_groups, where)}
        except ValueError as error:
            raise UnreadableFile("access", str(error)) from None
    if groups is not None:
        return {**metadata, ACCESS_FIELD: groups}
    return metadata


def _jsonl_documents(path: Path, groups: list[str] | None = None) -> Iterator[Document]:
    """BEIR corpus lines {"_id", "title", "text"} or {"id", "text", "metadata"}; a line's own
    ``allowed_groups`` (top level or in metadata) wins over the file's."""
    for number, row in read_jsonl(path):
        doc_id = row.get("_id", row.get("id")) if isinstance(row, dict) else None
        if doc_id is None or not isinstance(row.get("text"), str):
            raise ValueError(f'{path}:{number} needs {{"_id", "title", "text"}} or {{"id", "text", "metadata"}}')
        metadata = dict(row.get("metadata") or {})
        title = row.get("title") or ""
        if title:
            metadata.setdefault("title", title)
        row_groups = row.get(ACCESS_FIELD, metadata.pop(ACCESS_FIELD, None))
        metadata = _with_access(metadata, row_groups, groups, f"{path}:{number}")
        text = f"{title} {row['text']}".strip()
        yield Document(str(doc_id), text, metadata)


def _access_list(file: Path, base: Path, default: list[str] | None) -> list[str] | None:
    """The access list of ``file``: its sidecar, else the nearest folder ``.access.json`` up to ``base``."""
    candidates = [file.with_name(file.name + ACCESS_SIDECAR)]
    folder = file.parent
    while True:
        candidates.append(folder / ACCESS_SIDECAR)
        if folder == base or base not in folder.parents:
            break
        folder = folder.parent
    for sidecar in candidates:
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or ACCESS_FIELD not in data:
                    raise ValueError(f'{sidecar.name} must be {{"{ACCESS_FIELD}": ["group", ...]}}')
                return check_access_list(data[ACCESS_FIELD], sidecar.name)
            except (ValueError, OSError) as error:  # json.JSONDecodeError is a ValueError
                raise UnreadableFile("access", f"access list {sidecar.name} is unreadable ({error}); fix it") from None
    return default


def _file_documents(file: Path, relative: str, groups: list[str] | None) -> tuple[list[Document], list[FileProblem]]:
    """The documents of one file, read whole (so a file is indexed entirely or not at all), and its warnings."""
    suffix = file.suffix.lower()
    metadata = _with_access({"source": relative, "path": relative}, None, groups, relative)
    notes = []
    if suffix in TEXT_SUFFIXES:
        text = file.read_text(encoding="utf-8", errors="replace")
        document = Document(relative, text, {**metadata, "title": _short_line(text) or file.stem})
    else:
        title, sections = READERS[suffix](file)
        document = Document.from_sections(relative, sections, {**metadata, "title": title or file.stem})
        blank = [meta["page"] for text, meta in sections if suffix == ".pdf" and not text]
        if blank and len(blank) == len(sections):
            notes.append("no page has a text layer (a scan?); OCR it first, e.g. with ocrmypdf")
        elif blank:
            notes.append(f"page(s) {', '.join(map(str, blank))} have no text layer (scans?) and are left out")
    kind = "scanned" if notes else "empty"
    if not notes and not document.text.strip():
        notes.append("no text")
    return [document], [FileProblem(relative, kind, note, skipped=False) for note in notes]


def read_documents(
    path: str | Path,
    report: ReadReport | None = None,
    *,
    allowed_groups: Iterable[str] | None = None,
    progress: bool = False,
) -> Iterator[Document]:
    """Documents from one file or every supported file under a folder (.txt .md .jsonl .pdf .docx .html .htm).

    A file becomes one document whose id is its path relative to the folder given (a JSONL file, one per
    line). With a ``report``, a file that cannot be read (encrypted, corrupt, unreadable access list) is
    recorded there and skipped, and the run goes on; without one it raises ``DocumentError``. Empty files
    and scans without text are warnings. ``allowed_groups`` is the access list of documents that get none
    from a JSONL field or a sidecar file. ``progress`` shows a bar over the files of a folder.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a folder of {' '.join(SUFFIXES)} files or one such file")
    default = None if allowed_groups is None else check_access_list(allowed_groups, "allowed_groups")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    readable = [f for f in files if f.suffix.lower() in SUFFIXES]
    if not path.is_dir() and not readable:
        raise ValueError(f"{path} is not one of {' '.join(SUFFIXES)}")
    if report is not None:
        report.other_files += sum(not f.name.endswith(ACCESS_SIDECAR) for f in files) - len(readable)
    if progress and len(readable) > 1:
        from tqdm.auto import tqdm

        readable = tqdm(readable, desc="Reading", unit="file")
    for file in readable:
        relative = file.relative_to(base).as_posix()
        jsonl = file.suffix.lower() == ".jsonl"
        parsed: list[str] = []
        try:
            groups = _access_list(file, base, default)
            if jsonl:  # checked whole before the first line is indexed, then streamed
                for document in _jsonl_documents(file, groups):
                    parsed.append(document.id)
                documents, notes = _jsonl_documents(file, groups), []
            else:
                documents, notes = _file_documents(file, relative, groups)
        except (UnreadableFile, ValueError, OSError) as error:
            kind = getattr(error, "kind", "corrupt")
            if report is None:
                raise DocumentError(str(error) if jsonl and kind == "corrupt" else f"{relative}: {kind}: {error}") from None
            report.add(FileProblem(relative, kind, str(error), skipped=True))
            if kind != "access":  # an unreadable access list must not leave older, wider access in place
                report.unread_ids += parsed if jsonl else [relative]
            continue
        for note in notes:
            if report is None:
                logger.warning("%s", note)
            else:
                report.add(note)
        if report is not None:
            report.files += 1
        for document in documents:
            if report is not None:
                report.documents += 1
            yield document


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
