"""The web demo: FastAPI serving one HTML page and a JSON API for document QA and chat."""

from __future__ import annotations

import socket
import threading
import webbrowser
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from demos.docqa.chat import chat_turn
from demos.docqa.pipeline import DocQA

PAGE = Path(__file__).parent / "static" / "index.html"


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Question(BaseModel):
    question: str = Field(min_length=1, max_length=2000)
    mode: Literal["qa", "chat"] = "qa"
    history: list[Turn] = []


def create_app(qa: DocQA, info: dict) -> FastAPI:
    """The app; ``info`` (corpus, model, notes) is shown on the page."""
    app = FastAPI(title="ResRank document QA demo")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/api/info")
    def about() -> dict:
        return info

    @app.post("/api/ask")
    def ask(question: Question) -> dict:
        if not question.question.strip():
            raise HTTPException(422, "the question is empty")
        try:
            if question.mode == "chat":
                answer = chat_turn(qa, [turn.model_dump() for turn in question.history], question.question)
            else:
                answer = qa.ask(question.question)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return answer.to_dict()

    return app


def check_port(host: str, port: int) -> None:
    """Raise a clear OSError when something already listens on ``host:port``."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise OSError(f"port {port} on {host} is busy; pass another one with --port")


def serve(qa: DocQA, info: dict, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = True) -> None:
    """Run the web demo until interrupted; prints the URL and optionally opens it."""
    import uvicorn

    check_port(host, port)
    url = f"http://{host}:{port}/"
    print(f"ResRank demo ready: open {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(qa, info), host=host, port=port, log_level="warning")
