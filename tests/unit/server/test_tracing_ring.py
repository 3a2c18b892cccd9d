"""The ring of the last N traces and its statistics (server/observability/tracing.py),
fed by a real OpenTelemetry SDK tracer provider with spans of chosen times."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from server.domain import tracing as domain_tracing
from server.observability.tracing import (
    MethodStat,
    TraceRing,
    TraceRuntime,
    method_stats,
    nearest_rank,
)

MS = 1_000_000  # ns


def _provider(ring: TraceRing) -> trace.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(ring)
    return provider.get_tracer("test")


def _root(
    tracer: trace.Tracer, name: str, start_ms: int, duration_ms: int, **attributes: str
) -> int:
    span = tracer.start_span(
        name,
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        kind=SpanKind.SERVER,
        attributes=attributes,
        start_time=start_ms * MS,
    )
    span.end(end_time=(start_ms + duration_ms) * MS)
    return span.get_span_context().trace_id


def test_the_ring_evicts_the_trace_that_least_recently_got_a_span() -> None:
    ring = TraceRing(max_traces=3, max_spans=10)
    tracer = _provider(ring)
    ids = [_root(tracer, f"t{i}", i, 1) for i in range(3)]
    assert [trace_id for trace_id, *_ in ring.snapshot()] == ids
    # A later span of the oldest trace makes it the newest ...
    parent = trace.NonRecordingSpan(
        trace.SpanContext(ids[0], 0x1234, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    tracer.start_span("late", context=trace.set_span_in_context(parent)).end()
    assert [trace_id for trace_id, *_ in ring.snapshot()] == [ids[1], ids[2], ids[0]]
    # ... so a fourth trace evicts the second, and a fifth the third.
    fourth = _root(tracer, "t3", 10, 1)
    assert [trace_id for trace_id, *_ in ring.snapshot()] == [ids[2], ids[0], fourth]
    fifth = _root(tracer, "t4", 11, 1)
    assert [trace_id for trace_id, *_ in ring.snapshot()] == [ids[0], fourth, fifth]
    assert ring.get(ids[1]) is None and ring.get(ids[2]) is None
    spans, dropped = ring.get(ids[0]) or ([], -1)
    assert [span.name for span in spans] == ["t0", "late"] and dropped == 0


def test_a_trace_keeps_at_most_max_spans_and_counts_the_rest() -> None:
    ring = TraceRing(max_traces=10, max_spans=2)
    tracer = _provider(ring)
    root = tracer.start_span("root", context=trace.set_span_in_context(trace.INVALID_SPAN))
    context = trace.set_span_in_context(root)
    for i in range(4):
        tracer.start_span(f"child{i}", context=context).end()
    root.end()
    found = ring.get(root.get_span_context().trace_id)
    assert found is not None
    spans, dropped = found
    assert [span.name for span in spans] == ["child0", "child1"]
    assert dropped == 3  # child2, child3 and the root, which ended last


def test_stats_per_service_and_method_are_nearest_rank_percentiles() -> None:
    ring = TraceRing(max_traces=100, max_spans=100)
    tracer = _provider(ring)
    for i, duration in enumerate([5, 1, 4, 2, 3, 10, 7, 6, 9, 8]):  # 1..10 ms
        _root(tracer, "a.B/Get", i * 20, duration, **{"rpc.service": "a.B", "rpc.method": "Get"})
    span = tracer.start_span(
        "job.fail",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        attributes={"orchestrator.service": "orchestrator.jobs", "orchestrator.operation": "fail"},
        start_time=0,
    )
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end(end_time=3 * MS)
    spans = [s for _, trace_spans, _, _ in ring.snapshot() for s in trace_spans]
    assert method_stats(spans) == [
        MethodStat("a.B", "Get", 10, 0, 5.0, 10.0),
        MethodStat("orchestrator.jobs", "fail", 1, 1, 3.0, 3.0),
    ]
    assert nearest_rank([], 0.5) == 0.0
    assert nearest_rank([1.0, 2.0], 0.5) == 1.0
    assert nearest_rank([float(v) for v in range(1, 101)], 0.95) == 95.0


def test_the_runtime_installs_its_tracer_for_the_domain_and_gives_it_back() -> None:
    before = domain_tracing.install(None)
    try:
        runtime = TraceRuntime.start(5, 5)
        assert domain_tracing.enabled()
        assert not runtime.exporting
        with domain_tracing.job_span("enqueue", **{"job.id": "j1"}) as span:
            assert span is not None
            parent = domain_tracing.current_traceparent()
        assert parent is not None and parent.startswith("00-")
        assert int(parent[-2:], 16) & 1  # sampled
        domain_tracing.record_transitions("lease", [("j1", parent, {"job.type": "t"})], 0)
        (stored,) = runtime.ring.snapshot()
        assert [s.name for s in stored[1]] == ["job.enqueue", "job.lease"]
        lease = stored[1][1]
        assert lease.parent is not None
        assert f"{lease.parent.span_id:016x}" == parent.split("-")[2]
        runtime.shutdown()
        assert not domain_tracing.enabled()
    finally:
        domain_tracing.restore(before)


def test_recorded_transitions_are_sdk_spans_with_the_tracer_s_sampling() -> None:
    """record_transitions through the runtime (finished spans, not the tracer's live
    ones): the SDK's ReadableSpan with the provider's resource and the tracer's scope,
    a child of the job's span, linked to the current span; a root of a new trace
    without a parent; nothing for a parent that is not sampled (ParentBased)."""
    before = domain_tracing.install(None)
    try:
        runtime = TraceRuntime.start(10, 10)
        sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        unsampled = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        with domain_tracing.job_span("lease") as cause:
            assert cause is not None
            domain_tracing.record_transitions(
                "complete",
                [("j1", sampled, {"job.type": "t"}), ("j2", unsampled, {}), ("j3", None, {})],
                5 * MS,
                error="JOB_FAILED",
            )
        traces = {trace_id: spans for trace_id, spans, _, _ in runtime.ring.snapshot()}
        assert 0x1AF7651916CD43DD8448EB211C80319C not in traces
        (child,) = traces[0x0AF7651916CD43DD8448EB211C80319C]
        assert (child.name, child.kind, child.start_time) == (
            "job.complete",
            SpanKind.INTERNAL,
            5 * MS,
        )
        assert child.end_time is not None and child.end_time > 5 * MS
        assert child.parent is not None and child.parent.span_id == 0xB7AD6B7169203331
        assert child.context is not None and child.context.trace_flags.sampled
        assert dict(child.attributes or {}) == {
            "orchestrator.service": "orchestrator.jobs",
            "orchestrator.operation": "complete",
            "job.id": "j1",
            "job.type": "t",
        }
        assert (child.status.status_code, child.status.description) == (
            StatusCode.ERROR,
            "JOB_FAILED",
        )
        assert [link.context for link in child.links] == [cause.get_span_context()]
        assert child.resource.attributes["service.name"] == "orchestrator"
        assert child.instrumentation_scope is not None
        assert child.instrumentation_scope == cause.instrumentation_scope  # type: ignore[attr-defined]
        roots = [
            spans[0]
            for spans in traces.values()
            if spans[0].attributes and spans[0].attributes.get("job.id") == "j3"
        ]
        assert len(roots) == 1 and roots[0].parent is None
        runtime.shutdown()
    finally:
        domain_tracing.restore(before)


def test_traceparent_parsing() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = domain_tracing.parse_traceparent(good)
    assert context is not None
    assert domain_tracing.traceparent_of(context) == good
    for bad in (
        None,
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "x" * 55,
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    ):
        assert domain_tracing.parse_traceparent(bad) is None
