"""Trace id per call: from X-Stella-Trace-Id, else W3C traceparent, else new.

The id is echoed in the response's initial metadata (the gateway turns it into the
`X-Stella-Trace-Id` header) and opens the call context every later layer extends.

With tracing on (server/observability/tracing.py), every call also gets one
OpenTelemetry SERVER span, here and only here: a REST call reaches this chain once,
through the in-process gateway, so it is one span like a gRPC call. The span is named
by the full method (`package.Service/Method`), carries rpc.system, rpc.service,
rpc.method, rpc.grpc.status_code and, for REST, http.route; its trace id is the call's
(a non-hex X-Stella-Trace-Id is hashed to one and kept as `stella.trace_id`) and a
traceparent of that trace id makes its span id the parent. Its status is ERROR for
the codes the OpenTelemetry RPC conventions count as server errors.

While the call runs, its span's context is the current span (a `NonRecordingSpan`:
ids only), so the domain's spans and the jobs the call enqueues are its children; the
span itself is recorded whole when the call ends (`TraceRuntime.record`), which costs
a sixth of a live SDK span. Sampling is the SDK default's, ParentBased always-on: a
caller's traceparent that is not sampled (flags 00) makes an unsampled call, recorded
nowhere, whose children are not recorded either.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from server.domain.context import CallContext, reset_current_call, set_current_call
from server.domain.tracing import numeric_trace_id, parse_traceparent, usable_trace_id
from server.interceptors.base import invocation_value
from server.interceptors.chain import Streaming, Unary
from server.interceptors.metrics import split_method, status_of, status_set
from server.observability.http_metrics import http_route
from server.observability.tracing import TraceRuntime

TRACE_HEADER = "x-stella-trace-id"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
# Trace ids need uniqueness, not secrecy. `secrets` costs an os.urandom system call
# per request, which releases the GIL and queues the event loop behind the database
# threads (measured: +6.5% REST throughput without it). Seeded once from the OS.
_IDS = random.Random()


def resolve_trace_id(header: str | None, traceparent: str | None) -> str:
    """A caller's id is kept only if it is a sane token (`usable_trace_id`: not the
    all-zero W3C id either); anything else gets a new id."""
    if header and usable_trace_id(header):
        return header
    match = _TRACEPARENT.match(traceparent.strip().lower()) if traceparent else None
    if match and match.group(1) != "0" * 32:
        return match.group(1)
    return f"{_IDS.getrandbits(128) or 1:032x}"  # never the all-zero id W3C forbids


# The codes a server span counts as errors (OpenTelemetry semantic conventions, RPC
# spans, gRPC status: server side); the rest are the caller's mistakes.
_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
_CODES = {code.name: code.value[0] for code in grpc.StatusCode}


class Tracing:
    """The first stage: opens the call context every later stage extends, and publishes
    it (for logs) while the rest of the chain runs; with `runtime`, records the call's
    SERVER span around the rest of the chain."""

    def __init__(self, runtime: TraceRuntime | None = None) -> None:
        self.runtime = runtime

    def unary(self, method: str, inner: Unary) -> Unary:
        if self.runtime is not None:
            return self._traced_unary(method, inner, self.runtime)

        async def traced(request: Any, context: grpc.aio.ServicerContext, _: CallContext) -> Any:
            call = _open(method, context)
            token = set_current_call(call)
            try:
                await context.send_initial_metadata(((TRACE_HEADER, call.trace_id),))
                return await inner(request, context, call)
            finally:
                reset_current_call(token)

        return traced

    def streaming(self, method: str, inner: Streaming) -> Streaming:
        runtime = self.runtime
        name, attributes = _span_of(method)

        async def traced(
            request: Any, context: grpc.aio.ServicerContext, _: CallContext
        ) -> AsyncIterator[Any]:
            call = _open(method, context)
            token = set_current_call(call)
            try:
                await context.send_initial_metadata(((TRACE_HEADER, call.trace_id),))
            finally:
                reset_current_call(token)
            # Not held across yields: a stream is resumed and closed from whatever task
            # consumes it, whose context cannot reset this one's token; the chain's last
            # stage publishes the call around each step of the handler (chain.py).
            # Likewise the span is not made current: it is only started and ended here.
            if runtime is None:
                async for item in inner(request, context, call):
                    yield item
                return
            span = _ServerSpan.open(runtime, call, context)
            code = "OK"
            try:
                async for item in inner(request, context, call):
                    yield item
                code = status_set(context)
            except BaseException as exc:
                code = status_of(exc, context)
                raise
            finally:
                span.close(runtime, name, attributes, code)

        return traced

    @staticmethod
    def _traced_unary(method: str, inner: Unary, runtime: TraceRuntime) -> Unary:
        name, attributes = _span_of(method)

        async def traced(request: Any, context: grpc.aio.ServicerContext, _: CallContext) -> Any:
            call = _open(method, context)
            token = set_current_call(call)
            span = _ServerSpan.open(runtime, call, context)
            current = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span.context)))
            code = "OK"
            try:
                await context.send_initial_metadata(((TRACE_HEADER, call.trace_id),))
                response = await inner(request, context, call)
                code = status_set(context)
                return response
            except BaseException as exc:
                code = status_of(exc, context)
                raise
            finally:
                otel_context.detach(current)
                span.close(runtime, name, attributes, code)
                reset_current_call(token)

        return traced


def _span_of(method: str) -> tuple[str, dict[str, str | int]]:
    """A method's span name and its constant attributes, worked out once per method."""
    service, name = split_method(method)
    # rpc.grpc.status_code starts as OK (0) and is overwritten only when the call fails.
    return method.lstrip("/"), {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": name,
        "rpc.grpc.status_code": 0,
    }


class _ServerSpan:
    """A call's SERVER span while the call runs: its ids, its parent, its start."""

    __slots__ = ("context", "parent", "route", "start_ns", "stella_id")

    def __init__(
        self,
        context: SpanContext,
        parent: SpanContext | None,
        stella_id: str | None,
        route: str | None,
    ) -> None:
        self.context = context
        self.parent = parent
        self.start_ns = time.time_ns()
        self.stella_id = stella_id
        self.route = route

    @classmethod
    def open(
        cls, runtime: TraceRuntime, call: CallContext, context: grpc.aio.ServicerContext
    ) -> _ServerSpan:
        """A child of the caller's traceparent when it names the call's trace (sampled
        as that parent is), else a sampled root whose trace id is the call's."""
        parent = parse_traceparent(invocation_value(context, "traceparent"))
        trace_id = call.trace_id
        numeric = numeric_trace_id(trace_id)
        if parent is not None and parent.trace_id == numeric:
            flags = parent.trace_flags
        else:
            parent, flags = None, _SAMPLED
        ids = SpanContext(numeric, runtime.new_span_id(), is_remote=False, trace_flags=flags)
        hashed = len(trace_id) != 32 or trace_id != f"{numeric:032x}"
        return cls(ids, parent, trace_id if hashed else None, http_route())

    def close(
        self, runtime: TraceRuntime, name: str, constant: dict[str, str | int], code: str
    ) -> None:
        """Record the span (when sampled) with the call's outcome: rpc.grpc.status_code,
        and status ERROR for a server error."""
        if not self.context.trace_flags.sampled:
            return
        attributes: dict[str, str | int] = dict(constant)
        if self.stella_id is not None:
            attributes["stella.trace_id"] = self.stella_id
        if self.route is not None:
            attributes["http.route"] = self.route
        if code != "OK":
            attributes["rpc.grpc.status_code"] = _CODES.get(code, 2)
        runtime.record(
            name,
            self.context,
            parent=self.parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            links=(),
            start_ns=self.start_ns,
            end_ns=time.time_ns(),
            error=code if code in _SERVER_ERRORS else None,
        )


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _open(method: str, context: grpc.aio.ServicerContext) -> CallContext:
    trace_id = resolve_trace_id(
        invocation_value(context, TRACE_HEADER), invocation_value(context, "traceparent")
    )
    return CallContext(method=method, trace_id=trace_id)
