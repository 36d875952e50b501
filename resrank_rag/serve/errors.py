"""Errors as each API's clients expect them: OpenAI under /v1/embeddings, Cohere under /v2, TEI elsewhere."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

KINDS = {400: "Validation", 401: "Unauthorized", 404: "NotFound", 405: "NotFound", 413: "Validation",
         422: "Validation", 503: "Overloaded"}
OPENAI_TYPES = {401: "authentication_error", 503: "server_error", 500: "server_error"}


class APIError(Exception):
    """A request that cannot be answered: an HTTP status and a message that says what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """One error body, in the shape of the API that ``path`` belongs to."""
    kind = KINDS.get(status, "Backend")
    if path.startswith("/v1/embeddings"):
        body = {"error": {"message": message, "type": OPENAI_TYPES.get(status, "invalid_request_error"),
                          "param": None, "code": kind.lower()}}
    elif path.startswith(("/v1/", "/v2/")):
        body = {"message": message}
    else:
        body = {"error": message, "error_type": kind}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'parse error')}); send a JSON object"
        if tuple(item.get("loc", ())) == ("body",):
            return "the body must be a JSON object with this API's fields (and Content-Type: application/json)"
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {item.get('msg')}")
    return "; ".join(parts) or "the body does not match this API"


def install(app: FastAPI) -> None:
    """Route every failure (ours, validation, unknown paths, bugs) through ``error_response``."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error_response(request.url.path, error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request.url.path, 422, _validation_message(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(request.url.path, error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(request.url.path, 500, f"internal error ({type(error).__name__}); see the server log")
