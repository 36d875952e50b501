"""ASGI middleware that refuses request bodies over a size limit before they are held in memory."""

from __future__ import annotations

from resrank_rag.serve.errors import error_response


class BodyTooLarge(BaseException):
    """Raised from ``receive``; a BaseException so that the framework's body parser does not turn it into a 400."""


def body_limit(app, max_bytes: int):
    """Answer 413 when Content-Length or the streamed body exceeds ``max_bytes``."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        message = f"the request body is over {max_bytes / 2**20:g} MiB; send fewer or shorter documents per request"
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return await error_response(scope["path"], 413, message)(scope, receive, send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge
            return event

        async def tracking_send(event):
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await error_response(scope["path"], 413, message)(scope, receive, send)

    return wrapped
