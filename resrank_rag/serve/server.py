"""Running the service under uvicorn: one model per worker process, settings passed by environment."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager

from resrank_rag.serve.settings import SETTINGS_ENV, ServeSettings


def load_model(settings: ServeSettings):
    """The ResRank this process serves, with its torch thread count set first (the warm-up then runs with it)."""
    import torch

    from resrank_rag.model import ResRank

    if settings.threads:
        torch.set_num_threads(settings.threads)
    return ResRank.from_pretrained(settings.model, device=settings.device, precision=settings.precision)


def app_from_environment():
    """uvicorn factory for each worker: reads ServeSettings from $RESRANK_SERVE_SETTINGS and loads the model."""
    from resrank_rag.serve.app import create_app

    settings = ServeSettings.from_json(os.environ[SETTINGS_ENV])
    return create_app(load_model(settings), settings)


def check_port(host: str, port: int) -> None:
    """Raise a clear OSError when something already listens on ``host:port``."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise OSError(f"port {port} on {host} is busy; pass another one with --port")


def run(settings: ServeSettings, log_level: str = "info") -> None:
    """Serve until interrupted."""
    import uvicorn

    check_port(settings.host, settings.port)
    os.environ[SETTINGS_ENV] = settings.to_json()
    target = "resrank_rag.serve.server:app_from_environment"
    if settings.workers == 1:  # load here, so a bad --model fails before the port opens
        target = app_from_environment()
    uvicorn.run(target, factory=settings.workers > 1, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=log_level, timeout_graceful_shutdown=10)


@contextmanager
def serving_in_thread(app, host: str = "127.0.0.1", port: int = 0):
    """Run ``app`` under a real uvicorn server in a background thread; yields its base URL (tests, load tests)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="resrank-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
