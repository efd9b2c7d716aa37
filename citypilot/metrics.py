"""Prometheus metrics of every CityPilot process, and the cheap ASGI middleware timing HTTP.

Any module may increment these (the rule and command engines included): import
the metric and call ``.labels(...).inc()``. The API serves them at ``/metrics``;
each worker serves them on its own port (``metrics_port``). Names follow the
Prometheus conventions (``_total`` is added to counters by the client library).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily

# the ``*_created`` series double every counter's exposition for little use
disable_created_metrics()

OBSERVATIONS_RECEIVED = Counter(
    "citypilot_observations_received", "Observations received, per channel", ["channel"]
)
OBSERVATIONS_ACCEPTED = Counter(
    "citypilot_observations_accepted",
    "Observations accepted (stored, or stored by JetStream for the writers)",
    ["channel"],
)
OBSERVATIONS_REFUSED = Counter(
    "citypilot_observations_refused", "Observations refused by validation", ["channel"]
)
DEAD_LETTERS = Counter("citypilot_dead_letters", "Dead letters kept, per channel", ["channel"])
READINGS_WRITTEN = Counter(
    "citypilot_readings_written", "Readings written to the store by the writer workers"
)
BATCH_WRITE_SECONDS = Histogram(
    "citypilot_batch_write_seconds",
    "Time to write one batch of readings into the store",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STREAM_LAG = Gauge(
    "citypilot_stream_lag", "Events not yet acknowledged by a durable consumer", ["consumer"]
)
PUBLISH_IN_FLIGHT = Gauge(
    "citypilot_bus_publish_in_flight", "Publishes waiting for JetStream's PubAck"
)
INGEST_PAUSED = Counter(
    "citypilot_ingest_paused", "Times MQTT ingest paused (back-pressure), per reason", ["reason"]
)
RULE_EVALUATIONS = Counter("citypilot_rule_evaluations", "Rule evaluations, per engine", ["engine"])
RULE_ERRORS = Counter("citypilot_rule_errors", "Rule evaluations that failed", ["engine"])
COMMAND_TRANSITIONS = Counter(
    "citypilot_command_transitions", "Device commands entering a state", ["state"]
)


class LabelledHistogram:
    """A histogram for hot paths: plain per-series lists, no lock (one event loop writes),
    exported as a Prometheus histogram when scraped.

    ``prometheus_client``'s own ``Histogram.observe`` takes a lock per bucket and costs
    about 8 µs; this costs well under one.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = [*buckets, math.inf]
        self._series: dict[tuple[str, ...], list[float]] = {}  # counts per bucket, then sum
        REGISTRY.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """Count ``value`` in the series of ``labels``."""
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(self.bounds) + 1)
        series[bisect.bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram family with one series per label set (cumulative buckets)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self._series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(self.bounds, series, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            family.add_metric(list(labels), buckets, series[-1])
        yield family


HTTP_LATENCY = LabelledHistogram(
    "citypilot_http_request_duration_seconds",
    "HTTP request latency, per method, route template and status",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
WEBSOCKET_CLIENTS = Gauge("citypilot_websocket_clients", "Live-stream clients connected")
DEPENDENCY_UP = Gauge(
    "citypilot_dependency_up", "1 when a dependency answered its last check", ["dependency"]
)


def channel_of(source: str) -> str:
    """The channel of an ingest source name (``http:gw-1`` → ``http``)."""
    return source.split(":", 1)[0]


def exposition() -> tuple[bytes, str]:
    """The metrics of this process in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` of this process on ``port`` (a worker's own HTTP server)."""
    start_http_server(port, host)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HttpMetricsMiddleware:
    """Times each HTTP request into :data:`HTTP_LATENCY`, labelled by its route template.

    A plain ASGI middleware (no per-request objects beyond one closure) writing into a
    lock-free histogram, so its cost stays about a microsecond (docs/benchmarks.md);
    unmatched paths share the ``other`` label.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; observe its duration once the response started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            HTTP_LATENCY.observe((scope["method"], path, str(status)), time.perf_counter() - start)
