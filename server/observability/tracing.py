"""The tracing runtime (issue 13): the OpenTelemetry SDK tracer provider the server
owns, the bounded ring of the last N traces it keeps, and OTLP export.

- `TraceRing` is a `SpanProcessor`: each ended span is appended to its trace's list
  (one dict lookup, one append, one move-to-end under a lock); a new trace beyond
  `max_traces` evicts the trace that least recently got a span; a trace holds at most
  `max_spans` spans, later ones are counted as dropped. Nothing else runs on the
  request path: the views (`stats`, `tree`, `by_service`) do their work when asked.
- OTLP: with OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set,
  a `BatchSpanProcessor` exports over OTLP/HTTP protobuf from its own thread.
  OTLP/HTTP rather than the gRPC exporter: it adds no grpcio version constraint beside
  the server's pin, collectors accept both, and the SDK reads the same
  OTEL_EXPORTER_OTLP_* variables for either.
- Trace ids: a call's SERVER span uses the trace id the product resolved
  (server/interceptors/tracing.py), so X-Stella-Trace-Id, traceparent and the span
  agree.
- Finished spans (`TraceRuntime.record`): a span known whole when it is recorded (a
  call's SERVER span, a job transition) is built as the SDK's own `ReadableSpan` and
  handed to the provider's processors (the ring, the OTLP batch processor), skipping
  the tracer's live-span machinery: about 3 µs instead of 18 µs a span on this
  machine (bench/mesh.py measures the overhead on a GET). Sampling follows the
  tracer's default (ParentBased, always on) at the call sites.

The provider is not installed as OpenTelemetry's global: the server hands its tracer
to the interceptor stage and to the domain facade (server/domain/tracing.py).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from server.domain import tracing as domain_tracing

log = logging.getLogger("orchestrator.tracing")

INSTRUMENTATION: Final = "orchestrator.server"
OTLP_ENDPOINT_VARIABLES: Final = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


@dataclass
class _Stored:
    spans: list[ReadableSpan] = field(default_factory=list)
    dropped: int = 0
    last_end: int = 0  # ns since the epoch: the latest span end


class TraceRing(SpanProcessor):
    """The last `max_traces` traces, each at most `max_spans` spans."""

    def __init__(self, max_traces: int, max_spans: int) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: OrderedDict[int, _Stored] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        trace_id = context.trace_id
        with self._lock:
            traces = self._traces
            stored = traces.get(trace_id)
            if stored is None:
                stored = traces[trace_id] = _Stored()
                if len(traces) > self.max_traces:
                    traces.popitem(last=False)
            else:
                traces.move_to_end(trace_id)
            if len(stored.spans) < self.max_spans:
                stored.spans.append(span)
            else:
                stored.dropped += 1
            stored.last_end = max(stored.last_end, span.end_time or 0)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # --- views ------------------------------------------------------------------------

    def snapshot(self) -> list[tuple[int, list[ReadableSpan], int, int]]:
        """(trace id, spans, dropped, latest end) of every stored trace, oldest first."""
        with self._lock:
            return [
                (trace_id, list(s.spans), s.dropped, s.last_end)
                for trace_id, s in self._traces.items()
            ]

    def get(self, trace_id: int) -> tuple[list[ReadableSpan], int] | None:
        with self._lock:
            stored = self._traces.get(trace_id)
            return None if stored is None else (list(stored.spans), stored.dropped)

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()


def service_of(span: ReadableSpan) -> str:
    """A span's service: rpc.service, else the domain's `orchestrator.service`."""
    attributes = span.attributes or {}
    value = attributes.get("rpc.service") or attributes.get(domain_tracing.SERVICE_ATTRIBUTE)
    return str(value) if value else "unknown"


def method_of(span: ReadableSpan) -> str:
    """A span's method: rpc.method, else the domain's operation, else its name."""
    attributes = span.attributes or {}
    value = attributes.get("rpc.method") or attributes.get(domain_tracing.OPERATION_ATTRIBUTE)
    return str(value) if value else span.name


def duration_ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def is_error(span: ReadableSpan) -> bool:
    return span.status.status_code is StatusCode.ERROR


def nearest_rank(sorted_values: Sequence[float], quantile: float) -> float:
    """The nearest-rank percentile of ascending `sorted_values` (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(quantile * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class MethodStat:
    service: str
    method: str
    count: int
    errors: int
    p50_ms: float
    p95_ms: float


def method_stats(spans: Iterable[ReadableSpan]) -> list[MethodStat]:
    """Per (service, method): count, errors, p50 and p95 duration (ms, nearest rank),
    sorted by service then method."""
    durations: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], int] = {}
    for span in spans:
        key = (service_of(span), method_of(span))
        durations.setdefault(key, []).append(duration_ms(span))
        errors[key] = errors.get(key, 0) + (1 if is_error(span) else 0)
    stats = []
    for key in sorted(durations):
        values = sorted(durations[key])
        stats.append(
            MethodStat(
                key[0],
                key[1],
                len(values),
                errors[key],
                nearest_rank(values, 0.5),
                nearest_rank(values, 0.95),
            )
        )
    return stats


def otlp_endpoint_configured() -> bool:
    return any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES)


_UNSET: Final = Status(StatusCode.UNSET)
# Span ids need uniqueness, not secrecy (as the SDK's RandomIdGenerator, which uses
# `random` too); seeded once from the OS.
_IDS: Final = random.Random()


@dataclass
class TraceRuntime:
    """One server's tracer provider, its ring and tracer; a `SpanRecorder`
    (server/domain/tracing.py) of finished spans."""

    provider: TracerProvider
    ring: TraceRing
    tracer: trace.Tracer
    exporting: bool
    processors: tuple[SpanProcessor, ...] = ()
    _previous: domain_tracing.Installed | None = None
    _scope: InstrumentationScope = field(
        default_factory=lambda: InstrumentationScope(INSTRUMENTATION, "", None, None)
    )

    def record(
        self,
        name: str,
        context: SpanContext,
        *,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, domain_tracing.AttributeValue],
        links: Sequence[Link],
        start_ns: int,
        end_ns: int,
        error: str | None = None,
    ) -> None:
        """One finished span to every processor, as the SDK's `ReadableSpan` with the
        provider's resource and the tracer's instrumentation scope."""
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=self.provider.resource,
            attributes=attributes,
            links=links,
            kind=kind,
            status=_UNSET if error is None else Status(StatusCode.ERROR, error),
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        for processor in self.processors:
            processor.on_end(span)

    def new_span_id(self) -> int:
        return _IDS.getrandbits(64) or 1

    def new_trace_id(self) -> int:
        return _IDS.getrandbits(128) or 1

    @classmethod
    def start(cls, max_traces: int, max_spans: int) -> TraceRuntime:
        """Build the provider (resource from OTEL_SERVICE_NAME/OTEL_RESOURCE_ATTRIBUTES,
        default service name `orchestrator`), the ring and, when an OTLP endpoint is
        configured, the batch exporter; install the tracer for the domain's spans."""
        resource = Resource.create()  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "orchestrator"}))
        provider = TracerProvider(resource=resource)
        ring = TraceRing(max_traces, max_spans)
        processors: list[SpanProcessor] = [ring]
        exporting = otlp_endpoint_configured()
        if exporting:
            # Imported only when used: the exporter pulls in requests and the OTLP protos.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        for processor in processors:
            provider.add_span_processor(processor)
        tracer = provider.get_tracer(INSTRUMENTATION)
        runtime = cls(provider, ring, tracer, exporting, tuple(processors))
        runtime._previous = domain_tracing.install(tracer, runtime)
        return runtime

    def shutdown(self) -> None:
        """Flush and stop the exporter (blocking: run it off the event loop) and give
        the domain back the tracer it had before."""
        if self._previous is not None:
            domain_tracing.restore(self._previous)
        self.provider.shutdown()
