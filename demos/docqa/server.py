"""The web demo: FastAPI serving one HTML page and a JSON API for document QA and chat."""

from __future__ import annotations

import threading
import webbrowser
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from demos.docqa.chat import chat_turn
from demos.docqa.pipeline import DocQA
from resrank_rag.serve.server import check_port  # the service's own check: one copy

PAGE = Path(__file__).parent / "static" / "index.html"


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Question(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    mode: Literal["qa", "chat"] = "qa"
    history: list[Turn] = []
    user: str | None = Field(default=None, max_length=200)
    """The demo user to answer for (demo only: a real deployment takes the user from its authentication)."""


def create_app(qa: DocQA, info: dict) -> FastAPI:
    """The app; ``info`` (corpus, model, notes: the same for everyone) is shown on the page.

    The demo has no login: the page picks a demo user and the server looks up that user's groups
    (``qa.users``), never taking groups from the request. See docs/security.md before deploying anything like it.
    """
    app = FastAPI(title="ResRank document QA demo")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/api/info")
    def about(user: str | None = None) -> dict:
        """The page's facts, with the chunk count and file problems of what ``user`` may read."""
        try:
            view = qa.view(user)
        except PermissionError as error:
            raise HTTPException(403, str(error)) from None
        return {**info, **view, "users": sorted(qa.users), "access_control": qa.index.access_controlled()}

    @app.get("/api/source/{path:path}", include_in_schema=False)
    def source(path: str, user: str | None = None) -> FileResponse:
        """The original file of a passage, if the user may read some part of it."""
        try:
            principal = qa.principal(user)
        except PermissionError as error:
            raise HTTPException(403, str(error)) from None
        root = qa.source_root.resolve() if qa.source_root is not None else None
        file = (root / path).resolve() if root is not None else None
        if file is None or root not in file.parents or not file.is_file() or not qa.readable(path, principal):
            raise HTTPException(404, "no such document")  # the same answer for forbidden and missing
        return FileResponse(file)

    @app.post("/api/ask")
    def ask(question: Question) -> dict:
        if not question.question.strip():
            raise HTTPException(422, "the question is empty")
        try:
            if question.mode == "chat":
                history = [turn.model_dump() for turn in question.history]
                answer = chat_turn(qa, history, question.question, user=question.user)
            else:
                answer = qa.ask(question.question, user=question.user)
        except PermissionError as error:
            raise HTTPException(403, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return answer.to_dict()

    return app


def serve(qa: DocQA, info: dict, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = True) -> None:
    """Run the web demo until interrupted; prints the URL and optionally opens it."""
    import uvicorn

    check_port(host, port)
    url = f"http://{host}:{port}/"
    print(f"ResRank demo ready: open {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(qa, info), host=host, port=port, log_level="warning")
