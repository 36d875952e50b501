"""ASGI middleware that refuses request bodies larger than any request the limits allow, before they are parsed.

Parsing a JSON body builds a Python object per value: 57 MiB of tiny strings took a gigabyte and stalled
the server for seconds before the candidate limit could refuse it. So the body is capped at the bytes the
limits can need (``max_chars`` of text, ``max_candidates`` documents with their vectors), and its strings
and values are counted on the raw bytes (a few passes in C) before anything is parsed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from resrank_rag.serve.errors import error_response

BYTES_PER_CHAR = 12
"""JSON escapes one character in at most 12 bytes (a surrogate pair as two \\uXXXX escapes)."""
BYTES_PER_NUMBER = 48
"""A float as JSON text, with room for the separators and indentation of a pretty-printed body."""
SPARE_VALUES = 256
"""Field names, model names, flags: the values of a body beside its documents and vectors."""
SPARE_BYTES = 64 * 2**10


@dataclass(frozen=True)
class BodyLimits:
    """The most bytes, JSON strings and JSON values (array items and object members) one request may hold."""

    max_bytes: int
    max_strings: int
    max_values: int

    @classmethod
    def of(cls, settings, dim: int) -> BodyLimits:
        """What the largest request the settings allow needs: ``max_candidates`` documents (or inputs) and
        their ``dim``-wide vectors plus a query vector, ``max_chars`` of text; never more than ``max_body_mb``."""
        numbers = (settings.max_candidates + 1) * (dim + 1)
        needed = BYTES_PER_CHAR * settings.max_chars + BYTES_PER_NUMBER * numbers + 16 * settings.max_candidates + SPARE_BYTES
        return cls(
            max_bytes=min(int(settings.max_body_mb * 2**20), needed),
            max_strings=settings.max_candidates + SPARE_VALUES,
            max_values=numbers + settings.max_candidates + SPARE_VALUES,
        )


def json_shape(body: bytes, max_strings: int) -> tuple[int, int | None]:
    """(strings, values) of a JSON text, from its bytes: strings by their quotes once escapes are dropped,
    values (array items, object members) by the commas outside strings, + 1; values is None when there are
    more than ``max_strings`` strings (not counted). Exact for valid JSON; invalid JSON fails parsing later."""
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")  # every quote left opens or closes a string
    strings = plain.count(b'"') // 2
    if strings > max_strings:
        return strings, None
    return strings, b"".join(plain.split(b'"')[0::2]).count(b",") + 1


def body_limit(app, limits: BodyLimits):
    """Answer 413 when Content-Length, the streamed body, or its count of strings or values exceeds ``limits``."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        path = scope["path"]
        message = (f"the request body is over {limits.max_bytes / 2**20:g} MiB, more than the largest request this "
                   "server's limits allow needs; send fewer or shorter documents per request")
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            return await error_response(path, 413, message)(scope, receive, send)
        chunks, size = [], 0
        while True:
            event = await receive()
            if event["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(event.get("body", b""))
            size += len(chunks[-1])
            if size > limits.max_bytes:
                return await error_response(path, 413, message)(scope, receive, send)
            if not event.get("more_body"):
                break
        body = b"".join(chunks)
        if body:
            strings, values = await asyncio.to_thread(json_shape, body, limits.max_strings)
            if values is None or values > limits.max_values:
                found = (f"{strings} strings, more than the {limits.max_strings}" if values is None
                         else f"{values} values, more than the {limits.max_values}")
                text = (f"the request body holds {found} any request within this server's limits needs "
                        "(max_candidates documents with their vectors); send fewer documents per request")
                return await error_response(path, 413, text)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect the handler listens for
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return wrapped
