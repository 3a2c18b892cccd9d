"""Spans of the domain's work (issue 13): job transitions and engine steps.

A facade over the OpenTelemetry API (never the SDK, no transport): the server installs
its tracer at start (`install`, server/observability/tracing.py); until then, and when
tracing is off, every helper here is a no-op costing one global read.

Job traces. A job remembers the trace it was enqueued under as a W3C `traceparent`
(`jobs.trace_parent`: the `job.enqueue` span's context). Every later transition
(`job.lease`, `job.complete`, `job.fail`, `job.expire`, `job.dead_letter`) is a child
of that span, so a job enqueued over REST, leased and completed over gRPC is one trace;
the call that caused the transition (the worker's LeaseJobs, say) is in its own trace
and is *linked*, not parent: a worker's lease call takes jobs of many traces at once,
and one span cannot have several parents.

Finished spans. A transition span is known whole when it is recorded (its start and
end are already past), so it has no lifecycle to manage: with a `SpanRecorder`
installed beside the tracer (the server's runtime), `record_transitions` hands it over
as one finished span, about 3 µs instead of the 18 µs of a tracer's start_span/end
(sampler, bounded attributes, a lock, then a copy at end); a batch of 100 jobs has
300 of them per lease-and-complete round. Spans that are current while work runs
(`job_span`, `traced`) still go through the tracer.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

JOBS_SERVICE: Final = "orchestrator.jobs"  # the service of job transition spans
ORCHESTRA_SERVICE: Final = "orchestrator.orchestra"  # the service of engine step spans
SERVICE_ATTRIBUTE: Final = "orchestrator.service"  # set on every internal span
OPERATION_ATTRIBUTE: Final = "orchestrator.operation"

P = ParamSpec("P")
R = TypeVar("R")
AttributeValue = str | bool | int | float


class SpanRecorder(Protocol):
    """Takes spans that are already over (server/observability/tracing.py)."""

    def record(
        self,
        name: str,
        context: SpanContext,
        *,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue],
        links: Sequence[Link],
        start_ns: int,
        end_ns: int,
        error: str | None = None,
    ) -> None:
        """Store and export one finished span: `context` its own ids (trace id, a new
        span id, flags), `parent` the span it is a child of (None: a root), times in
        ns since the epoch, `error` a status description that makes it ERROR."""
        ...

    def new_span_id(self) -> int:
        """A random non-zero 64-bit span id."""
        ...

    def new_trace_id(self) -> int:
        """A random non-zero 128-bit trace id."""
        ...


@dataclass(frozen=True, slots=True)
class Installed:
    """What the domain's spans go to: the tracer, and a recorder of finished spans."""

    tracer: trace.Tracer | None
    recorder: SpanRecorder | None = None


_tracer: trace.Tracer | None = None
_recorder: SpanRecorder | None = None

# A trace id the product takes from X-Stella-Trace-Id: 1 to 64 of these characters.
TRACE_TOKEN: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HEX32: Final = re.compile(r"[0-9a-fA-F]{32}")
_ZERO_ID: Final = "0" * 32


def usable_trace_id(value: str | None) -> bool:
    """Whether `value` can be a call's trace id: 1 to 64 letters, digits, `.`, `_`,
    `:` or `-`, and not the all-zero id W3C Trace Context forbids."""
    return bool(value) and TRACE_TOKEN.fullmatch(value or "") is not None and value != _ZERO_ID


def numeric_trace_id(trace_id: str) -> int:
    """The 128-bit OpenTelemetry trace id of a call's trace id: itself when 32 hex
    digits (either case), else a BLAKE2b-128 hash of its UTF-8 text (never 0). The
    interceptor's spans and the trace lookup (GetTrace) both map ids with this."""
    if _HEX32.fullmatch(trace_id):
        value = int(trace_id, 16)
        if value:
            return value
    digest = hashlib.blake2b(trace_id.encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big") or 1


def install(tracer: trace.Tracer | None, recorder: SpanRecorder | None = None) -> Installed:
    """Make `tracer` (and `recorder`, for finished spans) what the domain's spans use
    (None: no spans); answers what it replaces, for `restore(previous)` at stop."""
    global _tracer, _recorder
    previous = Installed(_tracer, _recorder)
    _tracer, _recorder = tracer, (recorder if tracer is not None else None)
    return previous


def restore(previous: Installed) -> None:
    """Put back what `install` answered."""
    install(previous.tracer, previous.recorder)


def enabled() -> bool:
    return _tracer is not None


def traceparent_of(context: SpanContext) -> str | None:
    """The W3C traceparent of a valid span context (version 00), else None."""
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A remote span context from a `00-<trace id>-<span id>-<flags>` text, or None
    when absent or malformed (all-zero ids included)."""
    if not value or len(value) != 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    try:
        trace_id = int(value[3:35], 16)
        span_id = int(value[36:52], 16)
        flags = int(value[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))


@contextmanager
def job_span(operation: str, **attributes: AttributeValue) -> Iterator[trace.Span | None]:
    """A span `job.<operation>` around a block, current inside it (the jobs the block
    creates store its context: `current_traceparent`); None when tracing is off."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    attributes[SERVICE_ATTRIBUTE] = JOBS_SERVICE
    attributes[OPERATION_ATTRIBUTE] = operation
    span = tracer.start_span(f"job.{operation}", kind=SpanKind.INTERNAL, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        otel_context.detach(token)
        span.end()


@contextmanager
def resumed(traceparent: str | None) -> Iterator[None]:
    """Make the span a stored W3C `traceparent` names the current parent while the
    block runs (a process instance's run: its engine steps' spans and the jobs they
    enqueue join that trace); a no-op when tracing is off or `traceparent` is None
    or malformed."""
    remote = parse_traceparent(traceparent) if _tracer is not None else None
    if remote is None:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_traceparent() -> str | None:
    """The traceparent of the current span (what a job enqueued now remembers)."""
    if _tracer is None:
        return None
    return traceparent_of(trace.get_current_span().get_span_context())


def now_ns() -> int:
    """A span start time (ns since the epoch) to pass to `record_transitions` later."""
    return time.time_ns() if _tracer is not None else 0


def record_transitions(
    operation: str,
    jobs: Iterable[tuple[str, str | None, Mapping[str, AttributeValue]]],
    started_ns: int,
    *,
    error: str | None = None,
) -> None:
    """One finished span `job.<operation>` per (job id, the job's traceparent,
    attributes), from `started_ns` to now, each a child of the job's `job.enqueue` span
    (a root of its own when the job has none: enqueued with tracing off) and linked to
    the current span (the call or loop that did it). `error` sets status ERROR."""
    tracer = _tracer
    if tracer is None:
        return
    cause = trace.get_current_span().get_span_context()
    links = [Link(cause)] if cause.is_valid else None
    ended = time.time_ns()
    recorder = _recorder
    if recorder is not None:
        _record_transitions(
            recorder, operation, jobs, started_ns or ended, ended, links or (), error
        )
        return
    for job_id, parent, extra in jobs:
        remote = parse_traceparent(parent)
        context = (
            trace.set_span_in_context(trace.NonRecordingSpan(remote))
            if remote is not None
            else otel_context.Context()  # a fresh root, not the current call's child
        )
        attributes: dict[str, AttributeValue] = {
            SERVICE_ATTRIBUTE: JOBS_SERVICE,
            OPERATION_ATTRIBUTE: operation,
            "job.id": job_id,
            **extra,
        }
        span = tracer.start_span(
            f"job.{operation}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=started_ns or ended,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=ended)


def _record_transitions(
    recorder: SpanRecorder,
    operation: str,
    jobs: Iterable[tuple[str, str | None, Mapping[str, AttributeValue]]],
    started_ns: int,
    ended_ns: int,
    links: Sequence[Link],
    error: str | None,
) -> None:
    """`record_transitions` through a recorder, with the tracer's sampling rule
    (ParentBased, always on): a child of an unsampled parent is not recorded. Each
    distinct traceparent is parsed once: the jobs of one batch enqueue share theirs,
    and a lease or completion of 100 of them parsed it 100 times (~2.5 µs each)."""
    name = f"job.{operation}"
    parents: dict[str | None, SpanContext | None] = {}
    for job_id, parent, extra in jobs:
        if parent in parents:
            remote = parents[parent]
        else:
            remote = parents[parent] = parse_traceparent(parent)
        if remote is not None and not remote.trace_flags.sampled:
            continue
        span_id = recorder.new_span_id()
        trace_id = remote.trace_id if remote is not None else recorder.new_trace_id()
        attributes: dict[str, AttributeValue] = {
            SERVICE_ATTRIBUTE: JOBS_SERVICE,
            OPERATION_ATTRIBUTE: operation,
            "job.id": job_id,
            **extra,
        }
        recorder.record(
            name,
            SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED),
            parent=remote,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_ns=started_ns,
            end_ns=ended_ns,
            error=error,
        )


_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)


def traced(
    name: str, describe: Callable[..., Mapping[str, AttributeValue]] | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a coroutine function with a span `name` (service `orchestrator.orchestra`,
    operation the part after the last dot), current while it runs; `describe(*args,
    **kwargs)` gives its attributes. An exception sets status ERROR and propagates."""
    operation = name.rpartition(".")[2]

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            tracer = _tracer
            if tracer is None:
                return await func(*args, **kwargs)
            attributes: dict[str, Any] = {
                SERVICE_ATTRIBUTE: ORCHESTRA_SERVICE,
                OPERATION_ATTRIBUTE: operation,
            }
            if describe is not None:
                attributes.update(describe(*args, **kwargs))
            span = tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                return await func(*args, **kwargs)
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return wrapper

    return decorate
