"""The process's request metrics (prometheus-client) and the /metrics exposition.

Families (Prometheus naming: base units, `_total` counters):

- `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}` and the histogram
  `grpc_server_handling_seconds{grpc_service, grpc_method, grpc_code}`: every call
  through the interceptor chain, made by a gRPC client or by the in-process gateway
  for a REST request (the names go-grpc-prometheus made standard, with the code on
  the histogram too); `grpc_server_in_flight_requests{grpc_service, grpc_method}`.
- `http_server_requests_total{method, route, code}`, the histogram
  `http_server_request_duration_seconds{method, route, code}` and
  `http_server_in_flight_requests{method}`: every HTTP request, `route` being the
  path template that matched (`/jobengine/jobs/{job_id}`), never the raw path.
- `orchestrator_build_info{version, revision}` 1.

Multi-process mode (prometheus-client's): when PROMETHEUS_MULTIPROC_DIR names a
directory before the server starts, every process of the host started with it
writes its samples there and any one of them answers /metrics with the sum over all
(in-flight gauges over the live processes only). Empty the directory before
starting the processes, as prometheus-client's documentation says; each process
marks itself dead on a clean stop. The mode is read once, when prometheus-client is
first imported, which is why it is an environment variable and not a setting.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; from 1 ms (a cached read) to 60 s (the longest lease long-poll).
BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

GRPC_LABELS: Final = ("grpc_service", "grpc_method", "grpc_code")
HTTP_LABELS: Final = ("method", "route", "code")

GRPC_HANDLED: Final = Counter(
    "grpc_server_handled_total",
    "gRPC calls completed, by method and status code (network and in-process).",
    GRPC_LABELS,
)
GRPC_SECONDS: Final = Histogram(
    "grpc_server_handling_seconds",
    "Time from the call's start to its status, in seconds.",
    GRPC_LABELS,
    buckets=BUCKETS,
)
GRPC_IN_FLIGHT: Final = Gauge(
    "grpc_server_in_flight_requests",
    "gRPC calls started and not yet completed.",
    ("grpc_service", "grpc_method"),
    multiprocess_mode="livesum",
)
HTTP_REQUESTS: Final = Counter(
    "http_server_requests_total",
    "HTTP requests answered, by method, route template and status.",
    HTTP_LABELS,
)
HTTP_SECONDS: Final = Histogram(
    "http_server_request_duration_seconds",
    "Time from the request's arrival to the end of its response, in seconds.",
    HTTP_LABELS,
    buckets=BUCKETS,
)
HTTP_IN_FLIGHT: Final = Gauge(
    "http_server_in_flight_requests",
    "HTTP requests being answered.",
    ("method",),
    multiprocess_mode="livesum",
)
BUILD_INFO: Final = Gauge(
    "orchestrator_build_info",
    "1, labelled with the server's version and git revision.",
    ("version", "revision"),
    multiprocess_mode="max",
)


def multiprocess_dir() -> str | None:
    """The multi-process directory, None in single-process mode."""
    return os.environ.get(MULTIPROC_VARIABLE) or None


def process_registry() -> CollectorRegistry:
    """What this process exposes: the global registry (request metrics, process and
    Python collectors), or in multi-process mode every process's samples from the
    directory (prometheus-client multiprocess.MultiProcessCollector)."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def exposition(*extra: CollectorRegistry) -> bytes:
    """The text exposition of the process registry followed by `extra` registries
    (whose family names must differ)."""
    return b"".join(generate_latest(registry) for registry in (process_registry(), *extra))


def mark_process_dead(pid: int | None = None) -> None:
    """In multi-process mode, drop this process's live gauges (its in-flight counts);
    its counters and histograms stay in the sums. No-op in single-process mode."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            os.getpid() if pid is None else pid, path
        )
