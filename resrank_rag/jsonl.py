"""Read JSONL files line by line with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def read_jsonl(path: str | Path, damaged: list[str] | None = None) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line; undecodable bytes become U+FFFD.

    A line that is not JSON raises, or, given a ``damaged`` list, is described there and skipped.
    """
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                message = f"{path}:{number} is not valid JSON ({error})"
                if damaged is None:
                    raise ValueError(message) from None
                damaged.append(message)
