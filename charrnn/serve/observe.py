"""What a server reports about itself: `GET /health` and `GET /metrics` in Prometheus's text
format (requests by endpoint and status, tokens written, requests and rows in flight, the queue,
latency and time to first token)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import RequestError, log
from .models import ServedModel

ENDPOINTS = (
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/api/generate",
    "/api/score",
    "/health",
    "/metrics",
)
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One server's counters, in a registry of its own (two apps in one process stay apart)."""

    def __init__(self, models: dict[str, ServedModel], in_flight) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "charrnn_requests", "HTTP requests answered", ["endpoint", "status"], registry=registry
        )
        self.latency = Histogram(
            "charrnn_request_seconds",
            "Time to the whole answer",
            ["endpoint"],
            buckets=LATENCY,
            registry=registry,
        )
        self.first_token = Histogram(
            "charrnn_first_token_seconds",
            "Time to a stream's first text",
            ["model"],
            buckets=LATENCY,
            registry=registry,
        )
        self.tokens = Counter("charrnn_tokens", "Tokens written", ["model"], registry=registry)
        Gauge(
            "charrnn_requests_in_flight", "Requests being answered", registry=registry
        ).set_function(lambda: in_flight.count)
        rows = Gauge(
            "charrnn_rows_in_flight", "Rows in a model's pool", ["model"], registry=registry
        )
        queue = Gauge(
            "charrnn_queue", "Requests waiting to join a pool", ["model"], registry=registry
        )
        for name, served in models.items():
            rows.labels(name).set_function(lambda pool=served.pool: pool.rows)
            queue.labels(name).set_function(lambda pool=served.pool: pool.incoming.qsize())

    def text(self) -> bytes:
        return generate_latest(self.registry)


class Observed:
    """Counts every request by endpoint and status, and times it to its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        started, status = time.perf_counter(), None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:  # a bug in charrnn: one line in the log, a 500 if it can
            log.error("%s %s failed (%s: %s)", scope["method"], path, type(error).__name__, error)
            if status is None:
                status = 500
                failed = RequestError(500, "the server failed on this request", "server_error")
                await failed.response()(scope, receive, send)
        finally:
            self.metrics.requests.labels(endpoint, str(status or 500)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
