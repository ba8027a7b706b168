"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own (several apps in one process,
as in the tests, do not clash).

Exported:

* ``aromni_requests_total{endpoint,status}``: answered HTTP requests (WebSocket sessions: status ``websocket``);
* ``aromni_active_requests`` / ``aromni_queue_depth``: requests in flight / waiting for a slot;
* ``aromni_first_audio_seconds``: request to first audio chunk, of streamed speech (TTS, chat, WebSocket);
* from the batching engine's :class:`~aromni.serve.batching.EngineStats` at each scrape:
  ``aromni_batch_rows`` / ``aromni_batch_rows_busy`` / ``aromni_batch_active`` / ``aromni_batch_queued``,
  ``aromni_tokens_total``, ``aromni_tokens_per_second`` (over the last :data:`RATE_WINDOW_S` seconds),
  ``aromni_decode_steps_total``, ``aromni_requests_cancelled_total``, ``aromni_requests_failed_total``,
  ``aromni_rows_freed_cancelled_total``, ``aromni_engine_busy_seconds_total``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aromni.serve.batching import BatchingEngine
from aromni.serve.limits import Admission

#: Window of ``aromni_tokens_per_second`` (seconds).
RATE_WINDOW_S = 10.0
FIRST_AUDIO_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)


class TokenRate:
    """Tokens per second over the last ``window_s`` seconds, from the engine's running token count sampled at
    every scrape and every request's end: ``(count now - count at the window's start) / window``, the count at
    the window's start being the last sample taken by then (the window shrinks to the samples' age at first)."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def sample(self, tokens: int, now: float | None = None) -> float:
        """Record the count ``tokens`` at ``now`` (default: the monotonic clock) and return the rate."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._samples.append((now, tokens))
            start = now - self.window_s
            while len(self._samples) > 1 and self._samples[1][0] <= start:
                self._samples.popleft()  # the first sample stays the last one at or before the window's start
            t0, n0 = self._samples[0]
            span = min(self.window_s, now - t0)
            return (tokens - n0) / span if span > 0 else 0.0


class _EngineCollector(Collector):
    def __init__(self, engine: BatchingEngine, admission: Admission, rate: TokenRate):
        self.engine, self.admission, self.rate = engine, admission, rate

    def collect(self) -> Iterator[Metric]:
        s = self.engine.stats()
        gauges = {"aromni_active_requests": ("requests in flight", self.admission.in_flight),
                  "aromni_queue_depth": ("requests waiting for a slot", self.admission.waiting),
                  "aromni_batch_rows": ("cache rows of the batch", s.rows),
                  "aromni_batch_rows_busy": ("cache rows held by requests", s.rows_busy),
                  "aromni_batch_active": ("generations decoding", s.active),
                  "aromni_batch_queued": ("generations waiting for batch rows", s.queued),
                  "aromni_tokens_per_second": (f"tokens generated per second over the last {RATE_WINDOW_S:g} s",
                                               self.rate.sample(s.tokens))}
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        counters = {"aromni_tokens": ("tokens generated", s.tokens),
                    "aromni_decode_steps": ("batched decode steps", s.steps),
                    "aromni_requests_cancelled": ("generations cancelled (client gone, timeout)", s.cancelled),
                    "aromni_requests_failed": ("generations that failed", s.failed),
                    "aromni_rows_freed_cancelled": ("batch rows freed by cancelled generations",
                                                    s.rows_freed_cancelled),
                    "aromni_engine_busy_seconds": ("seconds spent in prefills and decode steps", s.busy_seconds)}
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=value)


class ServeMetrics:
    """The metrics of one app (see the module docstring)."""

    def __init__(self, engine: BatchingEngine, admission: Admission):
        self.registry = CollectorRegistry()
        self.requests = Counter("aromni_requests", "answered requests", ["endpoint", "status"],
                                registry=self.registry)
        self.first_audio = Histogram("aromni_first_audio_seconds", "request to the first audio chunk (streamed)",
                                     buckets=FIRST_AUDIO_BUCKETS, registry=self.registry)
        self.engine, self.rate = engine, TokenRate()
        self.rate.sample(engine.stats().tokens)
        self.registry.register(_EngineCollector(engine, admission, self.rate))

    def sample_tokens(self) -> None:
        """Record the engine's token count now (called as each request ends) for ``aromni_tokens_per_second``."""
        self.rate.sample(self.engine.stats().tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class RequestCounterMiddleware:
    """Counts every answered request in ``aromni_requests_total{endpoint,status}``; ``endpoint`` is the path
    when it is one of ``endpoints`` (bounded label values), else ``other``."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, endpoints: frozenset[str]):
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        status = "websocket" if scope["type"] == "websocket" else "500"

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.metrics.requests.labels(endpoint=endpoint, status=status).inc()
