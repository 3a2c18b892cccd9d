"""`record_transitions` (server/domain/tracing.py) through the server's recorder: one
span per job, a child of the job's own traceparent, whatever the other jobs of the
batch carry; a job of an unsampled trace records nothing; a job without one is a root
of a new trace."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from server.domain import tracing as domain_tracing
from server.observability.tracing import TraceRuntime

FIRST = "00-" + "a1" * 16 + "-" + "b2" * 8 + "-01"
SECOND = "00-" + "c3" * 16 + "-" + "d4" * 8 + "-01"
UNSAMPLED = "00-" + "e5" * 16 + "-" + "f6" * 8 + "-00"


@pytest.fixture
def runtime() -> Iterator[TraceRuntime]:
    runtime = TraceRuntime.start(max_traces=100, max_spans=100)
    try:
        yield runtime
    finally:
        runtime.shutdown()


def test_each_job_span_is_a_child_of_its_own_traceparent(runtime: TraceRuntime) -> None:
    started = time.time_ns()
    jobs = [
        ("j-1", FIRST, {"job.type": "t"}),
        ("j-2", SECOND, {"job.type": "t"}),
        ("j-3", FIRST, {"job.type": "u"}),
        ("j-4", UNSAMPLED, {"job.type": "t"}),
        ("j-5", None, {"job.type": "t"}),
        ("j-6", SECOND, {"job.type": "t"}),
    ]

    domain_tracing.record_transitions("lease", jobs, started)

    spans = {
        str((span.attributes or {})["job.id"]): span
        for _, stored, _, _ in runtime.ring.snapshot()
        for span in stored
    }
    assert sorted(spans) == ["j-1", "j-2", "j-3", "j-5", "j-6"]
    parents = {
        job_id: (span.context.trace_id, span.parent.span_id if span.parent else None)
        for job_id, span in spans.items()
        if span.context is not None
    }
    assert parents == {
        "j-1": (int("a1" * 16, 16), int("b2" * 8, 16)),
        "j-2": (int("c3" * 16, 16), int("d4" * 8, 16)),
        "j-3": (int("a1" * 16, 16), int("b2" * 8, 16)),
        "j-5": (parents["j-5"][0], None),
        "j-6": (int("c3" * 16, 16), int("d4" * 8, 16)),
    }
    assert parents["j-5"][0] not in {int("a1" * 16, 16), int("c3" * 16, 16)}
    assert {span.name for span in spans.values()} == {"job.lease"}
    assert (spans["j-3"].attributes or {})["job.type"] == "u"
    assert len({span.context.span_id for span in spans.values() if span.context}) == 5
