"""Write CPython's documentation topics (``pydoc_data.topics``, PSF licence) out as Markdown files.

Run from the repository root: ``python demos/docs_corpus/make_python_topics.py``. The output is
checked in, so the demo needs nothing at run time; re-run it only to refresh the shipped copy.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from pydoc_data.topics import topics

OUT = Path(__file__).parent / "python_topics"


def title_of(text: str, topic: str) -> str:
    """The topic's first line (its reST heading), else the topic key."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return first.replace('"', "") or topic


def to_markdown(topic: str, text: str) -> str:
    """The topic text under a Markdown heading, with the reST underline of its first heading removed."""
    body = re.sub(r"\A[^\n]*\n[*=\-]{3,}\n", "", text.strip() + "\n")
    return f"# {title_of(text, topic)}\n\n{body.strip()}\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.md"):
        old.unlink()
    for topic, text in sorted(topics.items()):
        (OUT / f"{topic}.md").write_text(to_markdown(topic, text), encoding="utf-8")
    print(f"wrote {len(topics)} topics from Python {platform.python_version()} to {OUT}")


if __name__ == "__main__":
    main()
