"""The pure rules of pack runs (server/domain/pack_runs.py): pack validation, cycle
detection and how a run advances (`plan`, `derive_status`)."""

from __future__ import annotations

import pytest

from server.domain.errors import InvalidArgument
from server.domain.events import EVENT_TYPES
from server.domain.jobs import EnqueueRequest, JobLimits
from server.domain.pack_runs import (
    EVENT_TYPE_NAMES,
    PackJobRequest,
    PackStep,
    derive_status,
    find_cycle,
    plan,
    validate_pack,
)

LIMITS = JobLimits(payload_max_bytes=1024)


def request(name: str, *deps: str, job_type: str = "work", **fields: object) -> PackJobRequest:
    return PackJobRequest(
        name=name,
        job=EnqueueRequest(job_type=job_type, source_id="src", **fields),  # type: ignore[arg-type]
        depends_on=deps,
    )


def step(
    position: int,
    name: str,
    status: str,
    *deps: str,
    job_status: str | None = None,
    job_id: str | None = None,
) -> PackStep:
    return PackStep(
        pack_run_id="run",
        position=position,
        tenant_id="t",
        name=name,
        job_type="work",
        source_id="src",
        priority=0,
        payload=None,
        max_attempts=3,
        backoff_initial_s=1.0,
        backoff_max_s=300.0,
        backoff_multiplier=2.0,
        backoff_jitter=0.2,
        depends_on=deps,
        status=status,
        job_id=job_id or (f"job-{name}" if status == "running" else None),
        job_status=job_status,
    )


def test_a_valid_pack_becomes_pending_steps_with_defaults_applied() -> None:
    steps = validate_pack(
        "p", [request("a", payload={"x": 1}, has_payload=True), request("b", "a")], LIMITS
    )
    assert [(s.position, s.name, s.status, s.depends_on) for s in steps] == [
        (0, "a", "pending", ()),
        (1, "b", "pending", ("a",)),
    ]
    assert steps[0].payload == '{"x":1}'
    assert (steps[0].max_attempts, steps[0].backoff_initial_s) == (3, 1.0)


def test_violations_name_the_items() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_pack(
            "x" * 201,
            [request("a", priority=5000), request("b", "a", "a"), request("c", job_type="")],
            LIMITS,
        )
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("packName", "must be at most 200 characters"),
        ("jobs[0].priority", "must be between -1000 and 1000, got 5000"),
        ("jobs[2].jobType", "is required"),
        ("jobs[1].dependsOn[1]", "names 'a' twice"),
    ]


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": (), "b": ("a",)}, None),
        ({"a": ("b",), "b": ("a",)}, ["a", "b"]),
        ({"x": (), "a": ("c",), "b": ("a",), "c": ("b",), "d": ("c",)}, ["a", "c", "b"]),
        ({"a": ("b",), "b": ("c",), "c": ("b",)}, ["b", "c"]),
    ],
)
def test_find_cycle(graph: dict[str, tuple[str, ...]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_plan_starts_what_is_ready_and_skips_what_cannot_run() -> None:
    steps = [
        step(0, "a", "running", job_status="succeeded"),
        step(1, "b", "running", job_status="dead_lettered"),
        step(2, "c", "pending", "a"),
        step(3, "d", "pending", "b"),
        step(4, "e", "pending", "d", "c"),
        step(5, "f", "running", job_status="leased"),
    ]
    decided = plan(steps, "running")
    assert dict(decided.moves) == {
        0: "succeeded",
        1: "failed",
        2: "running",
        3: "skipped",
        4: "skipped",
    }
    assert decided.start == (2,)
    assert decided.status == "running"


def test_plan_of_a_pruned_job_and_of_a_finished_run() -> None:
    gone = [step(0, "a", "running", job_status=None)]
    assert dict(plan(gone, "running").moves) == {0: "failed"}
    assert plan(gone, "running").status == "failed"
    assert plan(gone, "canceled").status == "canceled"


def test_derive_status() -> None:
    assert derive_status(["succeeded", "pending"]) == "running"
    assert derive_status(["succeeded", "running"]) == "running"
    assert derive_status(["succeeded", "succeeded"]) == "succeeded"
    assert derive_status(["succeeded", "canceled"]) == "failed"
    assert derive_status(["skipped", "failed"]) == "failed"


def test_every_pack_run_event_type_is_registered() -> None:
    assert EVENT_TYPE_NAMES <= EVENT_TYPES
