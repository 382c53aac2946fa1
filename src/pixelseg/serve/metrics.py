"""Prometheus metrics for GET /metrics: request counts and latency per route and status, batching.

Each app gets its own registry, so two apps in one process (tests) do not share counters. With
several worker processes (`pixelseg serve --workers N`) the launcher sets PROMETHEUS_MULTIPROC_DIR and
prometheus_client's multiprocess mode sums every worker's numbers into one answer.
"""
from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# request latency: from a 48 px image on a GPU (ms) to a 16 MP photo on a laptop CPU (many seconds)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self):
        # decided once, like prometheus_client's own choice of value storage (made when it is imported)
        self.multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("pixelseg_http_requests", "HTTP requests answered, by route, method and status",
                                ("route", "method", "status"), registry=r)
        self.latency = Histogram("pixelseg_http_request_duration_seconds",
                                 "time from the request's arrival to the last byte of the answer, by route",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=r)
        self.refusals = Counter("pixelseg_refusals", "requests refused with a 4xx, by error code", ("code",),
                                registry=r)
        self.batch_size = Histogram("pixelseg_batch_size", "images per model call", buckets=BATCH_BUCKETS, registry=r)
        self.model_seconds = Histogram("pixelseg_model_seconds", "wall time of one model call (a batch)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("pixelseg_queue_seconds", "time the oldest image of a batch waited for the model",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("pixelseg_images", "images segmented", registry=r)
        self.in_flight = Gauge("pixelseg_http_requests_in_flight", "requests being handled now",
                               registry=r, multiprocess_mode="livesum")

    def observe_batch(self, size: int, model_s: float, waited_s: float) -> None:
        self.batch_size.observe(size)
        self.model_seconds.observe(model_s)
        self.queue_seconds.observe(waited_s)
        self.images.inc(size)

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route_label(scope: Scope) -> str:
    # the route's template, never the raw path: a scan of random URLs must not create a label each
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class MetricsMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware): it sees every answer, errors included, without buffering bodies."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = _route_label(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
