"""The web demo: FastAPI serving one HTML page and a JSON API for document QA, chat and 👍/👎 feedback."""

from __future__ import annotations

import threading
import webbrowser
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from demos.docqa.chat import chat_turn
from demos.docqa.feedback import PageFeedback
from demos.docqa.pipeline import Answer, DocQA
from resrank_rag.feedback import FeedbackError
from resrank_rag.serve.server import check_port  # the service's own check: one copy

PAGE = Path(__file__).parent / "static" / "index.html"
PENDING_ANSWERS = 64
"""How many answers asked with ``generate: false`` the server keeps for ``/api/generate`` (oldest dropped)."""


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Question(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    mode: Literal["qa", "chat"] = "qa"
    history: list[Turn] = []
    user: str | None = Field(default=None, max_length=200)
    """The demo user to answer for (demo only: a real deployment takes the user from its authentication)."""
    generate: bool = True
    """False: answer at once with the extractive answer; ``POST /api/generate`` with its ``list_id`` adds the
    generated one."""


class Pending(BaseModel):
    list_id: str = Field(min_length=1, max_length=64)
    user: str | None = Field(default=None, max_length=200)


class Rating(BaseModel):
    list_id: str = Field(min_length=1, max_length=64)
    chunk_id: str = Field(min_length=1, max_length=2000)
    label: Literal[1, -1, 0]
    """1 👍, -1 👎, 0 clears the user's label."""
    user: str | None = Field(default=None, max_length=200)


def create_app(qa: DocQA, info: dict) -> FastAPI:
    """The app; ``info`` (corpus, model, notes: the same for everyone) is shown on the page.

    The demo has no login: the page picks a demo user and the server looks up that user's groups
    (``qa.users``), never taking groups from the request. See docs/security.md before deploying anything like it.
    Each answer's passages are recorded as shown to that user (``list_id``); ``/api/feedback`` rates them.
    """
    app = FastAPI(title="ResRank document QA demo")
    feedback = PageFeedback(qa)
    pending: OrderedDict[str, tuple[str, Answer]] = OrderedDict()
    pending_lock = threading.Lock()

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
        """The answer for the request's demo user, with the ``list_id`` of the passages it showed them."""
        if not question.question.strip():
            raise HTTPException(422, "the question is empty")
        try:
            user = feedback.user_name(question.user)
            if question.mode == "chat":
                history = [turn.model_dump() for turn in question.history]
                answer = chat_turn(qa, history, question.question, user=question.user, generate=question.generate)
            else:
                answer = qa.ask(question.question, user=question.user, generate=question.generate)
            list_id = feedback.record(answer, question.user)
        except PermissionError as error:
            raise HTTPException(403, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        if list_id is not None and not answer.generated and qa.generator is not None:
            with pending_lock:
                pending[list_id] = (user, answer)
                while len(pending) > PENDING_ANSWERS:
                    pending.popitem(last=False)
        return {**answer.to_dict(), "list_id": list_id}

    @app.post("/api/generate")
    def generate(request: Pending) -> dict:
        """The generated answer for an answer asked with ``generate: false`` by the same user (once)."""
        if qa.generator is None:
            raise HTTPException(400, "this demo generates no answers (--no-generate)")
        try:
            user = feedback.user_name(request.user)
        except PermissionError as error:
            raise HTTPException(403, str(error)) from None
        with pending_lock:
            owner, answer = pending.get(request.list_id, (None, None))
            if owner != user:  # the same answer for another user's list and a missing one
                raise HTTPException(404, "no answer of yours is waiting for generation; ask again")
            del pending[request.list_id]
        try:
            answer = qa.complete(answer)
        except ValueError as error:  # e.g. a prompt too long for the packaged generator
            raise HTTPException(400, str(error)) from None
        return {**answer.to_dict(), "list_id": request.list_id}

    @app.post("/api/feedback")
    def rate(rating: Rating) -> dict:
        """Store the user's 👍/👎 on a passage of an answer they were shown; their labels on that answer."""
        try:
            labels = feedback.rate(rating.list_id, rating.user, rating.chunk_id, rating.label)
        except (FeedbackError, PermissionError) as error:
            raise HTTPException(403, str(error)) from None
        return {"list_id": rating.list_id, "labels": labels}

    @app.get("/api/feedback")
    def labels(list_id: str, user: str | None = None) -> dict:
        """The user's labels on one of their answers (chunk id -> 1 or -1)."""
        try:
            return {"list_id": list_id, "labels": feedback.labels(list_id, user)}
        except PermissionError as error:
            raise HTTPException(403, str(error)) from None

    return app


def serve(qa: DocQA, info: dict, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = True) -> None:
    """Run the web demo until interrupted; prints the URL and optionally opens it. The passages' sentences
    are encoded in the background meanwhile (``DocQA.warm_extractive``), for extractive answers in milliseconds."""
    import uvicorn

    check_port(host, port)
    threading.Thread(target=qa.warm_extractive, name="warm-extractive", daemon=True).start()  # sentence vectors, once
    url = f"http://{host}:{port}/"
    print(f"ResRank demo ready: open {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(qa, info), host=host, port=port, log_level="warning")
