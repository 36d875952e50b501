"""ASGI middleware: every route but /health needs ``Authorization: Bearer <api key>``."""

from __future__ import annotations

import hmac

from resrank_rag.serve.errors import error_response

OPEN_PATHS = {"/health"}


def api_key_auth(app, api_key: str | None):
    """Refuse requests without the key with 401, before their body is read. No key: everything is open."""
    if api_key is None:
        return app
    expected = api_key.encode()

    async def wrapped(scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await app(scope, receive, send)
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), expected):
            message = ("missing or wrong API key; send the header 'Authorization: Bearer <key>' "
                       "with the key the server was started with (--api-key)")
            response = error_response(scope["path"], 401, message, {"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        return await app(scope, receive, send)

    return wrapped
