"""Read documents (.txt, .md, .jsonl, .pdf, .docx, .html) into Documents and chunk them into word windows.

PDF pages and DOCX/HTML headed sections are kept apart: a chunk never spans two, and its metadata says
which (``page`` or ``section``), beside ``source``, ``path`` (the file it was read from, set by the
reader: a JSONL row cannot choose it) and ``title``. Access lists (``allowed_groups``) come from a JSONL
field, a sidecar file or the caller (see ``resrank_rag.access``); a list that cannot be read hides what
it governs rather than let a wider one apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from resrank_rag.access import ACCESS_FIELD, HIDDEN, check_access_list, narrowest
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
    scanned or access (an access list that is unreadable, or a sidecar whose file is gone).

    ``allowed_groups`` is the access list of the file the problem names (None: it has none; ``HIDDEN``:
    unknown), so that a user is shown only the problems of files they may read.
    """

    path: str
    kind: str
    message: str
    skipped: bool
    allowed_groups: list[str] | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}" + (" (skipped)" if self.skipped else "")


@dataclass(frozen=True)
class UnreadFile:
    """A file that could not be read this time: ``ResRankIndex.sync(keep=...)`` keeps what was indexed of it.

    ``allowed_groups`` is the list that governs the file now (readable even when the file is not);
    ``documents`` the ids of the documents that could still be read out of it (JSONL rows) with their lists.
    """

    path: str
    allowed_groups: list[str] | None
    documents: dict[str, list[str] | None] = field(default_factory=dict)

    def access_list(self, doc_id: str) -> list[str] | None:
        """The list an indexed document of this file gets now; ``HIDDEN`` for one whose line is damaged."""
        return self.documents[doc_id] if doc_id in self.documents else HIDDEN


class DocumentError(ValueError):
    """A file that cannot be read, raised when ``read_documents`` is given no ``ReadReport``."""


class ReadReport:
    """What ``read_documents`` met: files read, problems (each also passed to ``echo`` as it happens)."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self.files = 0
        self.documents = 0
        self.other_files = 0
        self.problems: list[FileProblem] = []
        self.unread: list[UnreadFile] = []
        """Files that could not be read this time; ``sync(keep=...)`` keeps their chunks under their current lists."""
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
    document: Document, chunk_size: int | None = DEFAULT_CHUNK_WORDS, overlap: int = DEFAULT_OVERLAP_WORDS
) -> list[Document]:
    """The document itself when it fits one chunk, else chunks with ids ``<id>#<n>`` (n from 0).

    A chunk never spans two sections (pages), however short they are; ``chunk_size`` None cuts no word
    windows, only sections. Each chunk's metadata adds ``source`` (the document id) and ``chunk`` (n),
    and its section's metadata (``page`` or ``section``); a section's own ``allowed_groups`` can only
    narrow the document's. A document without words has no chunks.
    """
    pieces = []
    for text, meta in document.sections or [(document.text, {})]:
        merged = _section_metadata(document, meta)
        windows = ([text.strip()] if text.split() else []) if chunk_size is None else chunk_text(text, chunk_size, overlap)
        pieces += [(piece, merged) for piece in windows]
    if len(pieces) <= 1:
        return [Document(document.id, piece, meta) for piece, meta in pieces]
    return [
        Document(f"{document.id}#{n}", piece, {**meta, "source": document.id, "chunk": n})
        for n, (piece, meta) in enumerate(pieces)
    ]


def _section_metadata(document: Document, section: dict) -> dict:
    """The document's metadata with a section's; an access list there narrows the document's, never widens it."""
    merged = {**document.metadata, **section}
    if ACCESS_FIELD in section:
        where = f"document {document.id!r}, section {dict((k, v) for k, v in section.items() if k != ACCESS_FIELD)}"
        own = document.metadata.get(ACCESS_FIELD)
        own = None if own is None else check_access_list(own, f"document {document.id!r}")
        merged[ACCESS_FIELD] = narrowest(own, check_access_list(section[ACCESS_FIELD], where))
    return merged


def _with_access(metadata: dict, row_groups, groups: list[str] | None, where: str) -> dict:
    if row_groups is not None:
        try:
            return {**metadata, ACCESS_FIELD: check_access_list(row_groups, where)}
        except ValueError as error:
            raise UnreadableFile("access", str(error)) from None
    if groups is not None:
        return {**metadata, ACCESS_FIELD: groups}
    return metadata


def _row_document(row, number: int, path: Path, relative: str, groups: list[str] | None) -> Document:
    """One JSONL line as a Document: BEIR {"_id", "title", "text"} or {"id", "text", "metadata"}; the
    line's own ``allowed_groups`` (top level or in metadata) wins over the file's."""
    doc_id = row.get("_id", row.get("id")) if isinstance(row, dict) else None
    if doc_id is None or not isinstance(row.get("text"), str) or not isinstance(row.get("metadata") or {}, dict):
        raise ValueError(f'{path}:{number} needs {{"_id", "title", "text"}} or {{"id", "text", "metadata": {{...}}}}')
    metadata = dict(row.get("metadata") or {})
    title = row.get("title") or ""
    if title:
        metadata.setdefault("title", title)
    row_groups = row.get(ACCESS_FIELD, metadata.pop(ACCESS_FIELD, None))
    metadata = _with_access(metadata, row_groups, groups, f"{path}:{number}")
    metadata["path"] = relative  # the file it was read from, whatever the line says
    text = f"{title} {row['text']}".strip()
    return Document(str(doc_id), text, metadata)


def _jsonl_documents(path: Path, relative: str, groups: list[str] | None) -> Iterator[Document]:
    for number, row in read_jsonl(path):
        yield _row_document(row, number, path, relative, groups)


def _scan_jsonl(path: Path, relative: str, groups: list[str] | None) -> tuple[dict[str, list[str] | None], list[str], str]:
    """Every line that is a document: its id and access list; what is wrong with the others; the first one's kind."""
    rows: dict[str, list[str] | None] = {}
    damaged: list[str] = []
    kind = "corrupt"
    for number, row in read_jsonl(path, damaged):
        try:
            document = _row_document(row, number, path, relative, groups)
        except (ValueError, UnreadableFile) as error:
            kind = getattr(error, "kind", "corrupt") if not damaged else kind
            damaged.append(str(error))
            continue
        rows[document.id] = document.metadata.get(ACCESS_FIELD)
    return rows, damaged, kind


class _AccessLists:
    """The access list of each file under ``base``: its sidecar, else the nearest folder ``.access.json``,
    else ``default``; each list file read once.

    A list that cannot be read hides what it governs (``HIDDEN``) until it is fixed, and so does a sidecar
    whose file is gone (renamed without it?) for the files of its folder that have no sidecar of their own:
    the renamed file would otherwise fall back to a wider list.
    """

    def __init__(self, base: Path, default: list[str] | None, files: list[Path]):
        self.base, self.default = base, default
        self._lists: dict[Path, tuple[list[str], str | None]] = {}
        present = set(files)
        self.orphans: dict[Path, list[Path]] = {}
        for file in files:
            if file.name.endswith(ACCESS_SIDECAR) and file.name != ACCESS_SIDECAR:
                if file.with_name(file.name[: -len(ACCESS_SIDECAR)]) not in present:
                    self.orphans.setdefault(file.parent, []).append(file)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix()

    def read(self, sidecar: Path) -> tuple[list[str], str | None]:
        """(its list, None), or (``HIDDEN``, why it cannot be read)."""
        if sidecar not in self._lists:
            try:
                data = json.loads(sidecar.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or ACCESS_FIELD not in data:
                    raise ValueError(f'it must be {{"{ACCESS_FIELD}": ["group", ...]}}')
                self._lists[sidecar] = check_access_list(data[ACCESS_FIELD], sidecar.name), None
            except (ValueError, OSError) as error:  # json.JSONDecodeError is a ValueError
                self._lists[sidecar] = HIDDEN, f"unreadable ({error})"
        return self._lists[sidecar]

    def orphan_problems(self) -> list[FileProblem]:
        problems = []
        for folder, sidecars in sorted(self.orphans.items()):
            where = self.relative(folder) if folder != self.base else "the top folder"
            for sidecar in sidecars:
                gone = sidecar.name[: -len(ACCESS_SIDECAR)]
                problems.append(FileProblem(
                    self.relative(sidecar), "access",
                    f"its file {gone} is gone (renamed or deleted?); rename this sidecar with its file or delete it. "
                    f"Until then every file in {where} without a sidecar of its own is hidden (no one may read it)",
                    skipped=False, allowed_groups=self.read(sidecar)[0],
                ))
        return problems

    def of(self, file: Path) -> tuple[list[str] | None, FileProblem | None]:
        """The file's access list, and the problem of the list file that hides it (None when none does)."""
        own = file.with_name(file.name + ACCESS_SIDECAR)
        if own.is_file():
            return self._governing(own)
        if file.parent in self.orphans:
            return HIDDEN, None  # reported once per sidecar (orphan_problems)
        folder = file.parent
        while True:
            if (folder / ACCESS_SIDECAR).is_file():
                return self._governing(folder / ACCESS_SIDECAR)
            if folder == self.base or self.base not in folder.parents:
                return self.default, None
            folder = folder.parent

    def _governing(self, sidecar: Path) -> tuple[list[str], FileProblem | None]:
        groups, why = self.read(sidecar)
        if why is None:
            return groups, None
        message = f"access list {why}; fix it. Until then the files it governs are hidden (no one may read them)"
        return HIDDEN, FileProblem(self.relative(sidecar), "access", message, skipped=False, allowed_groups=HIDDEN)


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
    return [document], [FileProblem(relative, kind, note, skipped=False, allowed_groups=groups) for note in notes]


def read_documents(
    path: str | Path,
    report: ReadReport | None = None,
    *,
    allowed_groups: Iterable[str] | None = None,
    progress: bool = False,
) -> Iterator[Document]:
    """Documents from one file or every supported file under a folder (.txt .md .jsonl .pdf .docx .html .htm).

    A file becomes one document whose id is its path relative to the folder given (a JSONL file, one per
    line). With a ``report``, a file that cannot be read (encrypted, corrupt, a damaged JSONL line) is
    recorded there (``report.unread``: sync keeps what was indexed of it) and skipped, and the run goes on;
    an access list that cannot be read, or a sidecar whose file is gone, is recorded and hides what it
    governs (``allowed_groups`` ``[]``: no one may read it); without a report each of these raises
    ``DocumentError``. Empty files and scans without text are warnings. ``allowed_groups`` is the access
    list of documents that get none from a JSONL field or a sidecar file. ``progress`` shows a bar over
    the files of a folder.
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
    lists = _AccessLists(base, default, files if path.is_dir() else [])
    reported: set[str] = set()

    def problem(found: FileProblem) -> None:
        if report is None:
            raise DocumentError(str(found))
        if found.path not in reported:
            reported.add(found.path)
            report.add(found)

    for orphan in lists.orphan_problems():
        problem(orphan)
    if report is not None:
        report.other_files += sum(not f.name.endswith(ACCESS_SIDECAR) for f in files) - len(readable)
    if progress and len(readable) > 1:
        from tqdm.auto import tqdm

        readable = tqdm(readable, desc="Reading", unit="file")
    for file in readable:
        relative = file.relative_to(base).as_posix()
        jsonl = file.suffix.lower() == ".jsonl"
        groups, hidden_by = lists.of(file)
        if hidden_by is not None:
            problem(hidden_by)
        rows: dict[str, list[str] | None] = {}
        try:
            if jsonl:  # checked whole before the first line is indexed, then streamed
                rows, damaged, kind = _scan_jsonl(file, relative, groups)
                if damaged:
                    more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
                    raise UnreadableFile(kind, "; ".join(damaged[:3]) + more)
                documents, notes = _jsonl_documents(file, relative, groups), []
            else:
                documents, notes = _file_documents(file, relative, groups)
        except (UnreadableFile, ValueError, OSError) as error:
            kind = getattr(error, "kind", "corrupt")
            if report is None:
                raise DocumentError(str(error) if jsonl and kind == "corrupt" else f"{relative}: {kind}: {error}") from None
            report.add(FileProblem(relative, kind, str(error), skipped=True, allowed_groups=groups))
            report.unread.append(UnreadFile(relative, groups, rows if jsonl else {relative: groups}))
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
