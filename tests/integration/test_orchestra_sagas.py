"""Sagas (issue 13 point 2) on SQLite and PostgreSQL against the session's real server:
a real gRPC worker leases and completes or fails the step and compensation jobs; the
saga API is called over REST. Exact compensation order (sequential steps and
parallel branches), payloads, statuses, stored events, the failed-compensation
incident, cancel during compensation, a restart mid-compensation (fresh servers on
one database), the statistics and 404s."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from clients.base import CallerHeaders
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as wpb
from orchestrator.orchestra.v1 import orchestra_service_pb2 as opb
from server.app import Application
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.storage.tables import (
    EventRow,
    JobRow,
    OrchestraInstanceRow,
    OrchestraSagaStepRow,
    table_of,
)
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database, settings_for
from tests.integration.test_orchestra_engine import Orchestra, Worker
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock
from tests.support.orchestra import load_definition

_events = table_of(EventRow)
_jobs = table_of(JobRow)
_instances = table_of(OrchestraInstanceRow)
_steps = table_of(OrchestraSagaStepRow)
SAGA_EVENTS = (
    "orchestra.incident",
    "orchestra.instance.compensating",
    "orchestra.instance.compensated",
    "orchestra.instance.failed",
    "orchestra.instance.canceled",
    "orchestra.compensation.started",
    "orchestra.compensation.completed",
    "orchestra.compensation.failed",
    "orchestra.compensation.canceled",
)


class SagaWorker(Worker):
    async def lease_any(self, job_types: Sequence[str], wait: float = 5.0) -> list[wpb.Lease]:
        request = wpb.LeaseJobsRequest(worker_id="w-1", job_types=list(job_types), max_jobs=10)
        request.wait_timeout.FromMilliseconds(int(wait * 1000))
        return list((await self.call("LeaseJobs", request, wpb.LeaseJobsResponse)).leases)

    async def fail_retryable(self, token: wpb.FencingToken) -> str:
        """Fail the leased job retryably; the job's status after it."""
        failure = wpb.JobFailure(
            token=token, category="dependency", code="BUSY", message="try later", retryable=True
        )
        request = wpb.FailJobsRequest(worker_id="w-1", failures=[failure])
        [outcome] = (await self.call("FailJobs", request, wpb.FailJobsResponse)).results
        return outcome.job_status


@pytest.fixture
async def orchestra(grpc_target: str, tokens: TokenFactory, tenant: str) -> Orchestra:
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    return Orchestra(GrpcTransport(grpc_target), CallerHeaders(access_token=token))


@pytest.fixture
async def worker(grpc_target: str, tokens: TokenFactory, tenant: str) -> SagaWorker:
    token = await tokens.token(tenant)
    return SagaWorker(GrpcTransport(grpc_target), CallerHeaders(access_token=token))


class Types:
    """Unique job types of one test: `reserve`, `unreserve`, ..."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:6]

    def __getattr__(self, name: str) -> str:
        return f"{name}.{self.suffix}"


def four_steps(definition_id: str, t: Types) -> dict[str, Any]:
    """reserve -> charge -> ship -> notify; the first three declare compensations."""
    return {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {
                "id": "reserve",
                "type": "service_task",
                "job_type": t.reserve,
                "compensation": t.unreserve,
            },
            {
                "id": "charge",
                "type": "service_task",
                "job_type": t.charge,
                "compensation": t.refund,
            },
            {"id": "ship", "type": "service_task", "job_type": t.ship, "compensation": t.unship},
            {"id": "notify", "type": "service_task", "job_type": t.notify},
            {"id": "done", "type": "end"},
        ],
        "flows": [
            {"from": "start", "to": "reserve"},
            {"from": "reserve", "to": "charge"},
            {"from": "charge", "to": "ship"},
            {"from": "ship", "to": "notify"},
            {"from": "notify", "to": "done"},
        ],
    }


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def _saga_events(app: Application, instance_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_events.c.type, _events.c.data)
                .where(
                    _events.c.subject == f"orchestra-instances/{instance_id}",
                    _events.c.type.in_(SAGA_EVENTS),
                )
                .order_by(_events.c.event_id)
            )
        ).all()
    return [(row.type, json.loads(row.data)) for row in rows]


async def _one(worker: SagaWorker, job_type: str) -> wpb.Lease:
    [lease] = await worker.lease_any([job_type])
    assert lease.job.job_type == job_type
    return lease


async def _payload(lease: wpb.Lease) -> dict[str, Any]:
    value: dict[str, Any] = json_format.MessageToDict(lease.job.payload)
    return value


async def _run_to_ship_failure(
    orchestra: Orchestra, worker: SagaWorker, definition_id: str, t: Types
) -> tuple[str, dict[str, str]]:
    """Start a four-step saga, complete reserve and charge, dead-letter ship; the
    instance id and the step job ids by node."""
    instance_id = await orchestra.start(definition_id, {"order": 7})
    jobs: dict[str, str] = {}
    reserve = await _one(worker, t.reserve)
    jobs["reserve"] = reserve.job.job_id
    await worker.complete(reserve.token, {"reservation": "r-1"})
    charge = await _one(worker, t.charge)
    jobs["charge"] = charge.job.job_id
    await worker.complete(charge.token, {"charge": "c-1"})
    ship = await _one(worker, t.ship)
    jobs["ship"] = ship.job.job_id
    await worker.fail(ship.token)
    state = await orchestra.wait(instance_id, "compensating")
    assert state.status == "compensating"
    return instance_id, jobs


async def test_step_3_of_4_fails_compensations_run_2_then_1(
    app: Application,
    orchestra: Orchestra,
    worker: SagaWorker,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    t = Types()
    definition_id = _unique("saga")
    await load_definition(app, four_steps(definition_id, t))
    instance_id, jobs = await _run_to_ship_failure(orchestra, worker, definition_id, t)
    state = await orchestra.get(instance_id)
    assert list(state.tokens) == []
    assert (state.incident.kind, state.incident.node_id) == ("job_dead_lettered", "ship")

    # Only the last completed step's compensation is leasable: one at a time.
    compensation_types = [t.unreserve, t.refund, t.unship, t.notify]
    [first] = await worker.lease_any(compensation_types)
    assert first.job.job_type == t.refund
    [charge_step] = [step async for step in _steps_of(app, instance_id) if step.node_id == "charge"]
    assert await _payload(first) == {
        "saga_id": instance_id,
        "definition_id": definition_id,
        "definition_version": 1,
        "step": {
            "step_id": charge_step.step_id,
            "node_id": "charge",
            "job_type": t.charge,
            "job_id": jobs["charge"],
            "result": {"charge": "c-1"},
        },
        "compensation": {"order": 1, "of": 2},
        "failure": {
            "kind": "job_dead_lettered",
            "node_id": "ship",
            "message": f"job {jobs['ship']!r} was dead-lettered: dependency DOWN it broke",
        },
        "variables": {"order": 7, "reservation": "r-1", "charge": "c-1"},
    }
    assert await worker.lease_any(compensation_types, wait=0.3) == []
    await worker.complete(first.token, {"refunded": True})
    [second] = await worker.lease_any(compensation_types)
    assert second.job.job_type == t.unreserve
    assert (await _payload(second))["compensation"] == {"order": 2, "of": 2}
    await worker.complete(second.token, {})
    state = await orchestra.wait(instance_id, "compensated")
    assert state.status == "compensated"
    assert state.incident.kind == "job_dead_lettered"
    assert await worker.lease_any(compensation_types, wait=0.2) == []

    async with app.db.read() as conn:
        owners = dict(
            (
                await conn.execute(
                    sa.select(_jobs.c.job_id, _jobs.c.owner).where(
                        _jobs.c.job_id.in_([first.job.job_id, second.job.job_id])
                    )
                )
            ).all()
        )
        ended_at = (
            await conn.execute(
                sa.select(_instances.c.ended_at).where(_instances.c.instance_id == instance_id)
            )
        ).scalar()
    steps = {step.node_id: step async for step in _steps_of(app, instance_id)}
    assert owners == {
        first.job.job_id: f"orchestra-compensations/{steps['charge'].step_id}",
        second.job.job_id: f"orchestra-compensations/{steps['reserve'].step_id}",
    }
    assert ended_at is not None

    events = await _saga_events(app, instance_id)
    refund = {"step_id": steps["charge"].step_id, "node_id": "charge", "job_type": t.refund}
    unreserve = {
        "step_id": steps["reserve"].step_id,
        "node_id": "reserve",
        "job_type": t.unreserve,
    }
    assert [kind for kind, _ in events] == [
        "orchestra.incident",
        "orchestra.instance.compensating",
        "orchestra.compensation.started",
        "orchestra.compensation.completed",
        "orchestra.compensation.started",
        "orchestra.compensation.completed",
        "orchestra.instance.compensated",
    ]
    assert [data for _, data in events[1:]] == [
        {"kind": "job_dead_lettered", "compensations": 2},
        {**refund, "order": 1, "job_id": first.job.job_id},
        {**refund, "order": 1, "job_id": first.job.job_id},
        {**unreserve, "order": 2, "job_id": second.job.job_id},
        {**unreserve, "order": 2, "job_id": second.job.job_id},
        {"compensations": 2},
    ]

    # The saga over REST.
    headers = await tokens.headers(tenant, ("orch:read",))
    response = await http.get(f"/infrastructure/saga/{instance_id}", headers=headers)
    assert response.status_code == 200, response.text
    saga = response.json()
    assert (saga["sagaId"], saga["definitionId"], saga["status"]) == (
        instance_id,
        definition_id,
        "compensated",
    )
    assert saga["incident"]["kind"] == "job_dead_lettered"
    assert saga["incident"]["jobId"] == jobs["ship"]
    assert "endedAt" in saga and "duration" in saga
    assert [
        (s["position"], s["nodeId"], s["jobId"], s["status"], s["compensation"])
        for s in saga["steps"]
    ] == [
        (1, "reserve", jobs["reserve"], "succeeded", t.unreserve),
        (2, "charge", jobs["charge"], "succeeded", t.refund),
        (3, "ship", jobs["ship"], "failed", t.unship),
    ]
    assert saga["steps"][2]["error"] == (
        f"job {jobs['ship']!r} was dead-lettered: dependency DOWN it broke"
    )
    assert saga["steps"][2]["error"] == saga["incident"]["message"]  # one spelling
    assert all("endedAt" in s and "duration" in s for s in saga["steps"])
    assert [
        (c["order"], c["nodeId"], c["jobType"], c["jobId"], c["status"])
        for c in saga["compensations"]
    ] == [
        (1, "charge", t.refund, first.job.job_id, "succeeded"),
        (2, "reserve", t.unreserve, second.job.job_id, "succeeded"),
    ]
    assert all("startedAt" in c and "endedAt" in c for c in saga["compensations"])
    assert saga["compensations"][0]["endedAt"] <= saga["compensations"][1]["startedAt"]

    # The seed's instance list filters on the new status.
    listed = await orchestra.call(
        "ListInstances",
        opb.ListInstancesRequest(definition_id=definition_id, status="compensated"),
        opb.ListInstancesResponse,
    )
    assert [item.id for item in listed.instances] == [instance_id]
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    seed = {"Authorization": f"Bearer {token}"}
    params = {"definition_id": definition_id, "status": "compensated"}
    rows = await http.get("/orchestra-api/instances", params=params, headers=seed)
    assert rows.json() == [
        {"id": instance_id, "definition_id": definition_id, "status": "compensated"}
    ]
    one = (await http.get(f"/orchestra-api/instance/{instance_id}", headers=seed)).json()
    assert (one["status"], one["tokens"], one["incident"]["kind"]) == (
        "compensated",
        [],
        "job_dead_lettered",
    )


async def test_steps_and_compensations_are_retried_as_jobs(
    app: Application, orchestra: Orchestra, worker: SagaWorker
) -> None:
    """Step 3 fails for good only after its max attempts (3, with backoff); a
    compensation that fails retryably is leased again and the saga still ends
    compensated, in order."""
    t = Types()
    definition_id = _unique("saga_retry")
    await load_definition(app, four_steps(definition_id, t))
    instance_id = await orchestra.start(definition_id)
    for job_type in (t.reserve, t.charge):
        lease = await _one(worker, job_type)
        await worker.complete(lease.token, {})
    statuses = []
    for _ in range(3):  # backoff ~1 s, then ~2 s
        ship = await _one(worker, t.ship)
        statuses.append(await worker.fail_retryable(ship.token))
    assert statuses == ["failed", "failed", "dead_lettered"]
    await orchestra.wait(instance_id, "compensating")
    refund = await _one(worker, t.refund)
    assert await worker.fail_retryable(refund.token) == "failed"
    assert (await orchestra.get(instance_id)).status == "compensating"
    again = await _one(worker, t.refund)
    assert (again.job.job_id, again.job.attempts) == (refund.job.job_id, 2)
    await worker.complete(again.token, {})
    unreserve = await _one(worker, t.unreserve)
    await worker.complete(unreserve.token, {})
    assert (await orchestra.wait(instance_id, "compensated")).status == "compensated"
    steps = {step.node_id: step async for step in _steps_of(app, instance_id)}
    assert steps["ship"].status == "failed"
    assert (steps["charge"].compensation_order, steps["reserve"].compensation_order) == (1, 2)


async def test_a_failed_compensation_fails_the_saga_with_an_incident(
    app: Application, orchestra: Orchestra, worker: SagaWorker
) -> None:
    t = Types()
    definition_id = _unique("saga_fail")
    await load_definition(app, four_steps(definition_id, t))
    instance_id, _ = await _run_to_ship_failure(orchestra, worker, definition_id, t)
    refund = await _one(worker, t.refund)
    await worker.fail(refund.token)  # non-retryable: dead-lettered at once
    state = await orchestra.wait(instance_id, "failed")
    assert state.status == "failed"
    steps = {step.node_id: step async for step in _steps_of(app, instance_id)}
    assert state.incident.kind == "compensation_failed"
    assert state.incident.node_id == "charge"
    assert state.incident.job_id == refund.job.job_id
    assert state.incident.message == (
        f"compensation 1 of 2 ({t.refund!r}, undoing step 'charge') failed: job"
        f" {refund.job.job_id!r} was dead-lettered: dependency DOWN it broke;"
        " 1 later compensation(s) skipped"
    )
    assert await worker.lease_any([t.unreserve], wait=0.3) == []
    assert (steps["charge"].compensation_status, steps["reserve"].compensation_status) == (
        "failed",
        "skipped",
    )
    assert steps["reserve"].compensation_job_id is None
    events = await _saga_events(app, instance_id)
    assert [kind for kind, _ in events] == [
        "orchestra.incident",
        "orchestra.instance.compensating",
        "orchestra.compensation.started",
        "orchestra.compensation.failed",
        "orchestra.incident",
        "orchestra.instance.failed",
    ]
    assert events[3][1] == {
        "step_id": steps["charge"].step_id,
        "node_id": "charge",
        "job_type": t.refund,
        "order": 1,
        "job_id": refund.job.job_id,
        "job_status": "dead_lettered",
        "message": f"job {refund.job.job_id!r} was dead-lettered: dependency DOWN it broke",
    }
    assert events[4][1]["kind"] == "compensation_failed"
    assert events[5][1] == {"kind": "compensation_failed"}


async def test_parallel_branches_compensate_in_reverse_order_of_completion(
    app: Application, orchestra: Orchestra, worker: SagaWorker
) -> None:
    """Branch b's job succeeds first, a's second: a is undone first, whatever order the
    engine saw the endings in."""
    t = Types()
    definition_id = _unique("saga_fork")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "fork", "type": "parallel_gateway"},
                {"id": "a", "type": "service_task", "job_type": t.a, "compensation": t.undo_a},
                {"id": "b", "type": "service_task", "job_type": t.b, "compensation": t.undo_b},
                {"id": "join", "type": "parallel_gateway"},
                {"id": "c", "type": "service_task", "job_type": t.c},
                {"id": "done", "type": "end"},
            ],
            "flows": [
                {"from": "start", "to": "fork"},
                {"from": "fork", "to": "a"},
                {"from": "fork", "to": "b"},
                {"from": "a", "to": "join"},
                {"from": "b", "to": "join"},
                {"from": "join", "to": "c"},
                {"from": "c", "to": "done"},
            ],
        },
    )
    runner = app.orchestra
    assert runner is not None
    await runner.stop()  # both endings are seen in one pass, b's not first by luck
    try:
        instance_id = await orchestra.start(definition_id)
        a, b = await _one(worker, t.a), await _one(worker, t.b)
        await worker.complete(b.token, {"b": 1})
        await asyncio.sleep(0.01)
        await worker.complete(a.token, {"a": 1})
        assert await runner.run_once() >= 2
    finally:
        runner.start()
    c = await _one(worker, t.c)
    await worker.fail(c.token)
    await orchestra.wait(instance_id, "compensating")
    first = await _one(worker, t.undo_a)
    assert await worker.lease_any([t.undo_b], wait=0.3) == []
    await worker.complete(first.token, {})
    second = await _one(worker, t.undo_b)
    await worker.complete(second.token, {})
    assert (await orchestra.wait(instance_id, "compensated")).status == "compensated"
    steps = {step.node_id: step async for step in _steps_of(app, instance_id)}
    assert (steps["a"].compensation_order, steps["b"].compensation_order) == (1, 2)
    assert steps["b"].ended_at < steps["a"].ended_at


async def test_nothing_to_undo_compensates_at_once(
    app: Application, orchestra: Orchestra, worker: SagaWorker
) -> None:
    t = Types()
    definition_id = _unique("saga_first")
    await load_definition(app, four_steps(definition_id, t))
    instance_id = await orchestra.start(definition_id)
    reserve = await _one(worker, t.reserve)
    await worker.fail(reserve.token)
    state = await orchestra.wait(instance_id, "compensated")
    assert (state.status, state.incident.kind) == ("compensated", "job_dead_lettered")
    assert [data for _, data in await _saga_events(app, instance_id)][1:] == [
        {"kind": "job_dead_lettered", "compensations": 0},
        {"compensations": 0},
    ]


async def test_cancel_during_compensation_stops_it(
    app: Application, orchestra: Orchestra, worker: SagaWorker
) -> None:
    t = Types()
    definition_id = _unique("saga_cancel")
    await load_definition(app, four_steps(definition_id, t))
    instance_id, _ = await _run_to_ship_failure(orchestra, worker, definition_id, t)
    refund = await _one(worker, t.refund)  # leased: its worker learns of the cancel
    canceled = await orchestra.cancel(instance_id, reason="operator takes over")
    assert canceled.status == "canceled"
    assert canceled.incident.kind == "job_dead_lettered"
    async with app.db.read() as conn:
        status = (
            await conn.execute(sa.select(_jobs.c.status).where(_jobs.c.job_id == refund.job.job_id))
        ).scalar()
    assert status == "canceled"
    assert await worker.lease_any([t.refund, t.unreserve], wait=0.3) == []
    steps = {step.node_id: step async for step in _steps_of(app, instance_id)}
    assert (steps["charge"].compensation_status, steps["reserve"].compensation_status) == (
        "canceled",
        "canceled",
    )
    events = await _saga_events(app, instance_id)
    assert [kind for kind, _ in events][-3:] == [
        "orchestra.compensation.canceled",
        "orchestra.compensation.canceled",
        "orchestra.instance.canceled",
    ]
    assert events[-3][1]["job_id"] == refund.job.job_id
    assert "job_id" not in events[-2][1]
    assert events[-1][1] == {"reason": "operator takes over"}
    # Nothing moves a canceled saga, not even the canceled job's ending.
    runner = app.orchestra
    assert runner is not None
    await runner.run_once()
    assert (await orchestra.get(instance_id)).status == "canceled"


async def test_saga_stats_and_not_found(
    app: Application,
    orchestra: Orchestra,
    worker: SagaWorker,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    headers = await tokens.headers(tenant, ("orch:read",))
    empty = await http.get("/infrastructure/saga/stats", headers=headers)
    assert empty.status_code == 200, empty.text
    zero = dict.fromkeys(
        (
            "total",
            "running",
            "compensating",
            "completed",
            "compensated",
            "failed",
            "canceled",
            "finished",
        ),
        0,
    )
    assert empty.json() == {"totals": zero, "definitions": []}

    t = Types()
    saga_id = _unique("saga_stats")
    plain_id = _unique("plain")
    await load_definition(app, four_steps(saga_id, t))
    await load_definition(
        app,
        {
            "id": plain_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "task", "type": "user_task"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "task"}, {"from": "task", "to": "done"}],
        },
    )
    compensated, _ = await _run_to_ship_failure(orchestra, worker, saga_id, t)
    for job_type in (t.refund, t.unreserve):
        lease = await _one(worker, job_type)
        await worker.complete(lease.token, {})
    await orchestra.wait(compensated, "compensated")
    running = await orchestra.start(saga_id)  # waits for reserve
    canceled = await orchestra.start(saga_id)
    await orchestra.cancel(canceled)
    plain = await orchestra.start(plain_id)  # not a saga: not counted
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_instances.c.created_at, _instances.c.ended_at).where(
                    _instances.c.instance_id.in_([compensated, canceled])
                )
            )
        ).all()
    mean = sum((row.ended_at - row.created_at).total_seconds() for row in rows) / 2

    response = await http.get("/infrastructure/saga/stats", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-cache"
    stats = response.json()
    counts = {**zero, "total": 3, "running": 1, "compensated": 1, "canceled": 1, "finished": 2}
    assert stats["totals"] == counts
    assert [d["definitionId"] for d in stats["definitions"]] == [saga_id]
    assert stats["definitions"][0]["counts"] == counts
    for given in (stats["meanDuration"], stats["definitions"][0]["meanDuration"]):
        assert abs(float(given.removesuffix("s")) - mean) < 0.002, (given, mean)

    # Another tenant sees none of it; unknown, foreign and non-saga ids are one 404.
    other = f"t-{uuid.uuid4().hex[:10]}"
    other_headers = await tokens.headers(other, ("orch:read",))
    foreign = await http.get("/infrastructure/saga/stats", headers=other_headers)
    assert foreign.json() == {"totals": zero, "definitions": []}
    for saga, caller in (
        (str(uuid.uuid4()), headers),
        (running, other_headers),
        (plain, headers),
    ):
        missing = await http.get(f"/infrastructure/saga/{saga}", headers=caller)
        assert missing.status_code == 404, missing.text
        body = missing.json()
        assert body["code"] == "NOT_FOUND"
        assert body["error"] == f"saga {saga!r} not found"
    found = await http.get(f"/infrastructure/saga/{running}", headers=headers)
    assert found.status_code == 200
    assert found.json()["status"] == "running"
    assert "endedAt" not in found.json()
    assert [(s["nodeId"], s["status"]) for s in found.json()["steps"]] == [("reserve", "running")]
    assert found.json()["compensations"] == []


# --- a restart mid-compensation: fresh servers on one database -------------------------


@pytest.fixture(params=BACKENDS)
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sagas.db'}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


async def _served(url: str) -> tuple[Application, SagaWorker, Orchestra]:
    app = Application(settings_for(url), clocks=TestClock().clocks())
    await app.start()
    tokens = TokenFactory(app, f"http://127.0.0.1:{app.http_port}")
    target = f"127.0.0.1:{app.grpc_port}"
    worker = SagaWorker(GrpcTransport(target), CallerHeaders(access_token=await tokens.token("r")))
    orchestra_token = await tokens.token("r", permissions=[ORCHESTRA_PERMISSION])
    orchestra = Orchestra(GrpcTransport(target), CallerHeaders(access_token=orchestra_token))
    return app, worker, orchestra


async def test_compensation_resumes_after_a_restart(fresh_url: str) -> None:
    t = Types()
    definition_id = _unique("saga_restart")
    app, worker, orchestra = await _served(fresh_url)
    try:
        await load_definition(app, four_steps(definition_id, t))
        instance_id, _ = await _run_to_ship_failure(orchestra, worker, definition_id, t)
        refund = await _one(worker, t.refund)
        assert app.orchestra is not None
        await app.orchestra.stop()  # the ending below is never seen by this server
        await worker.complete(refund.token, {})
    finally:
        await app.stop(grace=1)
    app, worker, orchestra = await _served(fresh_url)
    try:
        unreserve = await _one(worker, t.unreserve)  # the new server moved the saga on
        await worker.complete(unreserve.token, {})
        state = await orchestra.wait(instance_id, "compensated")
        assert state.status == "compensated"
        kinds = [kind for kind, _ in await _saga_events(app, instance_id)]
        assert kinds.count("orchestra.compensation.completed") == 2
        assert kinds.count("orchestra.instance.compensated") == 1
    finally:
        await app.stop(grace=1)


# --- helpers ----------------------------------------------------------------------------


async def _steps_of(app: Application, instance_id: str) -> AsyncIterator[Any]:
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_steps)
                .where(_steps.c.instance_id == instance_id)
                .order_by(_steps.c.position)
            )
        ).all()
    for row in rows:
        yield row
