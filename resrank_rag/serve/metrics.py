"""Prometheus metrics of one server process: requests, latency, batch sizes, queue depth."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The service's metrics in their own registry (several apps in one process do not collide)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, routes: set[str]):
        self.routes = routes
        self.registry = CollectorRegistry()
        self.requests = Counter("resrank_requests", "HTTP requests by route and status code.",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("resrank_request_seconds", "HTTP request latency by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("resrank_batch_size", "Requests grouped into one model forward, by kind.",
                                    ["kind"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("resrank_batch_seconds", "Time of one batched model call, by kind.",
                                       ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("resrank_queue_depth", "Requests waiting for a forward.", registry=self.registry)
        self.rejected = Counter("resrank_rejected", "Requests refused with 503 because the queue was full.",
                                registry=self.registry)
        self.disconnects = Counter("resrank_client_disconnects", "Callers that left before their result.",
                                   registry=self.registry)

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        self.batch_size.labels(kind).observe(size)
        self.batch_seconds.labels(kind).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app):
        """ASGI middleware that counts and times every HTTP request (unknown paths as route 'other')."""

        async def wrapped(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            route = scope["path"] if scope["path"] in self.routes else "other"
            status = {"code": 500}

            async def tracking_send(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            start = time.perf_counter()
            try:
                await app(scope, receive, tracking_send)
            finally:
                self.latency.labels(route).observe(time.perf_counter() - start)
                self.requests.labels(route, str(status["code"])).inc()

        return wrapped
