"""Text out of PDF (pypdf, per page), DOCX (python-docx, per heading) and HTML (BeautifulSoup, per heading).

Each reader returns ``(title, sections)``: a section is a piece of text with where it came from
(``{"page": 3}`` or ``{"section": "Leave > Part-time staff"}``), so chunks never span two pages and every
chunk can be cited by page or heading. A file that cannot be read raises ``UnreadableFile`` with its kind
(``encrypted`` or ``corrupt``) and what to do about it.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["UnreadableFile", "read_docx", "read_html", "read_pdf"]

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""Password-protected Office files (and legacy .doc) are OLE containers, not zip files."""
HTML_BOILERPLATE = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "iframe", "svg", "button")
HTML_BOILERPLATE_ROLES = ("navigation", "banner", "contentinfo", "search", "complementary")
HEADING_LEVELS = 3
"""Headings h1-h3 (DOCX Heading 1-3) start a new section; deeper ones stay inside their section."""


class UnreadableFile(Exception):
    """A file whose text cannot be read: ``kind`` is ``encrypted`` or ``corrupt``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _short_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 80 else ""
    return ""


def _clean(text: str) -> str:
    return re.sub(r"[ \t\r\f\v]+", " ", re.sub(r"\n\s*\n+", "\n\n", text)).strip()


def read_pdf(path: Path) -> tuple[str, list[tuple[str, dict]]]:
    """(title, one section per page with ``{"page": n}``, n from 1). Pages without text come back empty."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError
    except ImportError:
        raise ImportError(f"reading {path} needs pypdf: pip install 'resrank-rag[documents]'") from None
    import logging

    quiet = logging.getLogger("pypdf")
    level, quiet.level = quiet.level, logging.ERROR  # its warnings on damaged files repeat ours
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # owner-password-only PDFs open with an empty user password
            except DependencyError:
                raise UnreadableFile("encrypted", "encrypted with AES; pip install cryptography to open it") from None
            if not opened:
                raise UnreadableFile("encrypted", "password-protected; save an unprotected copy to index it")
        pages = [(_clean(page.extract_text() or ""), {"page": n}) for n, page in enumerate(reader.pages, 1)]
        title = str((reader.metadata or {}).get("/Title") or "").strip()
    except UnreadableFile:
        raise
    except Exception as error:  # noqa: BLE001 - pypdf raises many kinds on damaged files
        raise UnreadableFile("corrupt", f"not a readable PDF ({type(error).__name__}: {error})") from None
    finally:
        quiet.setLevel(level)
    if not pages:
        raise UnreadableFile("corrupt", "a PDF without pages")
    return title or _short_line(next((text for text, _ in pages if text), "")), pages


def read_docx(path: Path) -> tuple[str, list[tuple[str, dict]]]:
    """(title, one section per heading with ``{"section": "Heading > Subheading"}``; text before any heading has none)."""
    try:
        import docx
    except ImportError:
        raise ImportError(f"reading {path} needs python-docx: pip install 'resrank-rag[documents]'") from None
    with open(path, "rb") as handle:
        if handle.read(8) == OLE_MAGIC:
            raise UnreadableFile(
                "encrypted", "password-protected (or an old binary .doc); save an unprotected .docx copy to index it"
            )
    try:
        document = docx.Document(str(path))
        blocks = list(document.iter_inner_content())
        title = (document.core_properties.title or "").strip()
    except Exception as error:  # noqa: BLE001 - zipfile, lxml and python-docx errors alike
        raise UnreadableFile("corrupt", f"not a readable DOCX ({type(error).__name__}: {error})") from None
    sections: list[tuple[str, dict]] = []
    headings: list[tuple[int, str]] = []  # the open headings, outermost first
    lines: list[str] = []

    def flush():
        text = _clean("\n".join(lines))
        if text:
            sections.append((text, {"section": " > ".join(h for _, h in headings)} if headings else {}))
        lines.clear()

    for block in blocks:
        if hasattr(block, "rows"):  # a table: one line per row, cells separated by |
            lines += [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
            continue
        text = block.text.strip()
        style = (block.style.name if block.style is not None else "") or ""
        if style == "Title" and text:  # the title goes to metadata, not into a chunk of its own
            title = title or text
            continue
        level = int(style.split()[-1]) if re.fullmatch(r"Heading [1-9]", style) else 0
        if text and 1 <= level <= HEADING_LEVELS:
            flush()
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, text))
        if text:
            lines.append(text)
    flush()
    first_heading = next((meta["section"] for _, meta in sections if meta), "")
    return title or first_heading.split(" > ")[0], sections


def read_html(path: Path) -> tuple[str, list[tuple[str, dict]]]:
    """(title, one section per h1-h3 with ``{"section": heading}``): navigation, headers, footers,
    sidebars, forms and scripts dropped; ``<main>`` or ``<article>`` when the page has one."""
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise ImportError(f"reading {path} needs beautifulsoup4: pip install 'resrank-rag[documents]'") from None
    soup = BeautifulSoup(path.read_bytes(), "html.parser")  # encoding from <meta charset> or detected
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(HTML_BOILERPLATE):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": list(HTML_BOILERPLATE_ROLES)}):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    marker = "\x00"
    for heading in root.find_all([f"h{n}" for n in range(1, HEADING_LEVELS + 1)]):
        text = heading.get_text(" ", strip=True)
        heading.replace_with(f" {marker}{text}{marker} {text} ")  # the heading stays in the section's text
    if soup.title:
        soup.title.decompose()
    pieces = root.get_text(" ").split(marker)
    sections: list[tuple[str, dict]] = []
    lead = " ".join(pieces[0].split())
    if lead:
        sections.append((lead, {}))
    for heading, body in zip(pieces[1::2], pieces[2::2]):
        text = " ".join(body.split())
        if text:
            sections.append((text, {"section": heading}))
    first_heading = next((meta["section"] for _, meta in sections if meta), "")
    return title or first_heading, sections
