"""TracingService: the stored traces' statistics, span trees and per-service lists
(tracing_service.proto); the spans come from the ring of server/observability/tracing.py.
With tracing off (no runtime) every answer is empty and every trace is NOT_FOUND."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from orchestrator.mesh.v1 import tracing_service_pb2 as pb
from orchestrator.mesh.v1 import tracing_service_pb2_grpc as pb_grpc
from server.domain.errors import InvalidArgument, NotFound
from server.domain.tracing import TRACE_TOKEN, numeric_trace_id, usable_trace_id
from server.observability.tracing import (
    TraceRuntime,
    duration_ms,
    is_error,
    method_stats,
    service_of,
)

LIMIT_DEFAULT: Final = 20
LIMIT_MAX: Final = 100
SERVICE_NAME_MAX: Final = 256
_DEPTH_MAX: Final = 64  # span trees deeper than this are cut (protobuf nests up to 100)
# What a trace lookup accepts: any id a call can have (X-Stella-Trace-Id's tokens,
# W3C ids of either case), except the all-zero id W3C forbids (JSON Schema: ECMA-262).
_TRACE_ID_PATTERN: Final = rf"^(?!0{{32}}$){TRACE_TOKEN.pattern}$"
# Service names are dotted identifiers (rpc.service, `orchestrator.jobs`).
_SERVICE_NAME = re.compile(rf"[A-Za-z0-9_.-]{{1,{SERVICE_NAME_MAX}}}")


def field_rules() -> dict[FieldDescriptor, dict[str, Any]]:
    """The checks above as JSON Schema keywords (server/http_surface.py, OpenAPI)."""
    get = pb.GetTraceRequest.DESCRIPTOR.fields_by_name
    listing = pb.ListServiceTracesRequest.DESCRIPTOR.fields_by_name
    return {
        get["trace_id"]: {"pattern": _TRACE_ID_PATTERN},
        listing["service_name"]: {"pattern": f"^{_SERVICE_NAME.pattern}$"},
        listing["limit"]: {"minimum": 0},  # 0 is the default; over LIMIT_MAX is coerced
    }


class TracingService(pb_grpc.TracingServiceServicer):
    def __init__(self, runtime: TraceRuntime | None) -> None:
        self._runtime = runtime

    async def GetTracingStats(
        self, request: pb.GetTracingStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTracingStatsResponse:
        runtime = self._runtime
        if runtime is None:
            return pb.GetTracingStatsResponse(enabled=False)
        stored = runtime.ring.snapshot()
        spans = [span for _, trace_spans, _, _ in stored for span in trace_spans]
        return pb.GetTracingStatsResponse(
            methods=[
                pb.MethodStats(
                    service=s.service,
                    method=s.method,
                    count=s.count,
                    errors=s.errors,
                    p50_ms=s.p50_ms,
                    p95_ms=s.p95_ms,
                )
                for s in method_stats(spans)
            ],
            trace_count=len(stored),
            span_count=len(spans),
            max_traces=runtime.ring.max_traces,
            enabled=True,
        )

    async def GetTrace(
        self, request: pb.GetTraceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTraceResponse:
        asked = request.trace_id
        if not usable_trace_id(asked):
            raise InvalidArgument.of(
                "trace_id",
                "must be a trace id as the server answers them: a W3C trace id (32 hex"
                " digits, not all zero) or an X-Stella-Trace-Id token (1 to 64 letters,"
                " digits, '.', '_', ':' or '-')",
            )
        number = numeric_trace_id(asked)
        trace_id = f"{number:032x}"
        found = None if self._runtime is None else self._runtime.ring.get(number)
        if found is None:
            raise NotFound(
                f"trace {asked!r} not found (never recorded here, or evicted)",
                reason="TRACE_NOT_FOUND",
                metadata={"traceId": asked},
            )
        spans, dropped = found
        start = min(span.start_time or 0 for span in spans)
        end = max(span.end_time or 0 for span in spans)
        return pb.GetTraceResponse(
            trace_id=trace_id,
            spans=_tree(spans),
            span_count=len(spans),
            dropped_span_count=dropped,
            start_time=_timestamp(start),
            end_time=_timestamp(end),
            duration_ms=(end - start) / 1e6,
        )

    async def ListServiceTraces(
        self, request: pb.ListServiceTracesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListServiceTracesResponse:
        name = request.service_name
        violations = []
        if not _SERVICE_NAME.fullmatch(name):
            violations.append(
                InvalidArgument.of(
                    "service_name",
                    f"must be a service name: 1 to {SERVICE_NAME_MAX} letters, digits, '.',"
                    " '_' or '-'",
                ).violations[0]
            )
        if request.limit < 0:
            violations.append(
                InvalidArgument.of("limit", "must not be negative (0 means 20)").violations[0]
            )
        if violations:
            raise InvalidArgument.from_violations(violations)
        limit = min(request.limit or LIMIT_DEFAULT, LIMIT_MAX)
        if self._runtime is None:
            return pb.ListServiceTracesResponse()
        found: list[pb.TraceSummary] = []
        # Newest first: the ring keeps the trace that got a span last at its end.
        for trace_id, spans, _, _ in reversed(self._runtime.ring.snapshot()):
            services = sorted({service_of(span) for span in spans})
            if not any(_matches(service, name) for service in services):
                continue
            found.append(_summary(trace_id, spans, services))
            if len(found) >= limit:
                break
        return pb.ListServiceTracesResponse(traces=found)


def _matches(service: str, name: str) -> bool:
    """`orchestrator.jobengine.v1.JobsService` matches itself and `JobsService`."""
    return service == name or service.rpartition(".")[2] == name


def _summary(trace_id: int, spans: Sequence[ReadableSpan], services: list[str]) -> pb.TraceSummary:
    ids = {span.context.span_id for span in spans if span.context is not None}
    roots = [span for span in spans if span.parent is None or span.parent.span_id not in ids]
    first = min(roots or spans, key=lambda span: span.start_time or 0)
    start = min(span.start_time or 0 for span in spans)
    end = max(span.end_time or 0 for span in spans)
    return pb.TraceSummary(
        trace_id=f"{trace_id:032x}",
        root_name=first.name,
        start_time=_timestamp(start),
        duration_ms=(end - start) / 1e6,
        span_count=len(spans),
        error_count=sum(1 for span in spans if is_error(span)),
        services=services,
    )


def _tree(spans: Sequence[ReadableSpan]) -> list[pb.Span]:
    """The spans as trees: a span whose parent is in `spans` is that parent's child;
    the others are roots. Siblings oldest first. (Built bottom-up: a protobuf message
    appended to a repeated field is copied, so children go in before their parent.)"""
    ordered = sorted(
        (span for span in spans if span.context is not None),
        key=lambda span: (span.start_time or 0, span.end_time or 0),
    )
    ids = {span.context.span_id for span in ordered if span.context is not None}
    children: dict[int, list[ReadableSpan]] = {}
    roots: list[ReadableSpan] = []
    for span in ordered:
        assert span.context is not None
        parent = span.parent.span_id if span.parent is not None else None
        if parent is not None and parent in ids and parent != span.context.span_id:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)

    def build(span: ReadableSpan, depth: int) -> pb.Span:
        message = _span(span)
        assert span.context is not None
        if depth < _DEPTH_MAX:
            message.children.extend(
                build(child, depth + 1) for child in children.get(span.context.span_id, ())
            )
        return message

    return [build(root, 0) for root in roots]


def _span(span: ReadableSpan) -> pb.Span:
    attributes = struct_pb2.Struct()
    for key, value in (span.attributes or {}).items():
        attributes[key] = list(value) if isinstance(value, tuple) else value
    status = span.status
    return pb.Span(
        span_id=f"{span.context.span_id:016x}" if span.context is not None else "",
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent is not None else "",
        name=span.name,
        kind="SERVER" if span.kind is SpanKind.SERVER else span.kind.name,
        start_time=_timestamp(span.start_time or 0),
        end_time=_timestamp(span.end_time or 0),
        duration_ms=duration_ms(span),
        status=status.status_code.name,
        status_message=(status.description or "") if status.status_code is StatusCode.ERROR else "",
        attributes=attributes,
        links=[
            pb.SpanLink(
                trace_id=f"{link.context.trace_id:032x}", span_id=f"{link.context.span_id:016x}"
            )
            for link in span.links
        ],
    )


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)
