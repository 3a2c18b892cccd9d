"""The process engine over gRPC on SQLite and PostgreSQL (issue 11 points 1, 2, 6):
parallel fork and join, timers fired by the running server's loop, service tasks
worked by a real gRPC worker (result merged, dead letter an incident), exactly one of
two concurrent signals, cancel, and immutable definition versions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import json_format, struct_pb2

from clients.base import CallerHeaders, ServiceClient
from clients.errors import ApiError
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as wpb
from orchestrator.orchestra.v1 import orchestra_service_pb2 as pb
from server.app import Application
from server.domain.context import CallContext
from server.domain.orchestra.instances import LIST_MAX, RELEASE_CONCURRENCY, list_instances
from server.domain.orchestra.runner import OrchestraRunner
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.storage.repositories.orchestra import SqlOrchestraStore
from server.storage.tables import EventRow, JobRow, SourceRow, table_of
from tests.support.auth import TokenFactory
from tests.support.orchestra import load_definition

_events = table_of(EventRow)
_jobs = table_of(JobRow)
_sources = table_of(SourceRow)


class Orchestra(ServiceClient):
    service = pb.DESCRIPTOR.services_by_name["OrchestraService"]

    async def start(self, definition_id: str, variables: dict[str, Any] | None = None) -> str:
        request = pb.StartProcessRequest(definition_id=definition_id)
        if variables is not None:
            request.variables.struct_value.update(variables)
        response = await self.call("StartProcess", request, pb.StartProcessResponse)
        return response.instance_id

    async def get(self, instance_id: str) -> Any:
        request = pb.GetInstanceRequest(instance_id=instance_id)
        return (await self.call("GetInstance", request, pb.GetInstanceResponse)).instance

    async def signal(self, token_id: str, variables: dict[str, Any] | None = None) -> str:
        request = pb.SignalTokenRequest(token_id=token_id)
        if variables is not None:
            request.variables.struct_value.update(variables)
        return (await self.call("SignalToken", request, pb.SignalTokenResponse)).status

    async def variables(self, instance_id: str) -> dict[str, Any]:
        request = pb.GetVariablesRequest(instance_id=instance_id)
        response = await self.call("GetVariables", request, pb.GetVariablesResponse)
        return {key: _plain(value) for key, value in _struct(response.variables).items()}

    async def cancel(self, instance_id: str, reason: str = "") -> Any:
        request = pb.CancelInstanceRequest(instance_id=instance_id, reason=reason)
        return (await self.call("CancelInstance", request, pb.CancelInstanceResponse)).instance

    async def wait(self, instance_id: str, status: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.get(instance_id)
            if state.status == status or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.02)


class Worker(ServiceClient):
    service = wpb.DESCRIPTOR.services_by_name["WorkerService"]

    async def lease(self, job_type: str, wait: float = 5.0, max_jobs: int = 10) -> list[wpb.Lease]:
        request = wpb.LeaseJobsRequest(worker_id="w-1", job_types=[job_type], max_jobs=max_jobs)
        request.wait_timeout.FromMilliseconds(int(wait * 1000))
        return list((await self.call("LeaseJobs", request, wpb.LeaseJobsResponse)).leases)

    async def complete(self, token: wpb.FencingToken, result: dict[str, Any]) -> None:
        value = struct_pb2.Value()
        value.struct_value.update(result)
        request = wpb.CompleteJobsRequest(
            worker_id="w-1", completions=[wpb.JobCompletion(token=token, result=value)]
        )
        [outcome] = (await self.call("CompleteJobs", request, wpb.CompleteJobsResponse)).results
        assert outcome.status.code == 0, outcome

    async def fail(self, token: wpb.FencingToken) -> None:
        failure = wpb.JobFailure(
            token=token, category="dependency", code="DOWN", message="it broke", retryable=False
        )
        request = wpb.FailJobsRequest(worker_id="w-1", failures=[failure])
        [outcome] = (await self.call("FailJobs", request, wpb.FailJobsResponse)).results
        assert outcome.job_status == "dead_lettered", outcome


def _struct(message: struct_pb2.Struct) -> dict[str, Any]:
    value: dict[str, Any] = json_format.MessageToDict(message)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@pytest.fixture
async def orchestra(grpc_target: str, tokens: TokenFactory, tenant: str) -> Orchestra:
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    return Orchestra(GrpcTransport(grpc_target), CallerHeaders(access_token=token))


@pytest.fixture
async def worker(grpc_target: str, tokens: TokenFactory, tenant: str) -> Worker:
    token = await tokens.token(tenant)
    return Worker(GrpcTransport(grpc_target), CallerHeaders(access_token=token))


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def _events_of(app: Application, instance_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_events.c.type, _events.c.data)
                .where(_events.c.subject == f"orchestra-instances/{instance_id}")
                .order_by(_events.c.event_id)
            )
        ).all()
    return [(row.type, json.loads(row.data)) for row in rows]


async def _job_row(app: Application, job_id: str) -> Any:
    async with app.db.read() as conn:
        return (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id))).one()


async def test_parallel_fork_join_with_a_timer(app: Application, orchestra: Orchestra) -> None:
    definition_id = _unique("fork")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "fork", "type": "parallel_gateway"},
                {"id": "approve", "type": "user_task"},
                {"id": "cool_off", "type": "timer", "duration": "PT0.3S"},
                {"id": "join", "type": "parallel_gateway"},
                {"id": "done", "type": "end"},
            ],
            "flows": [
                {"from": "start", "to": "fork"},
                {"from": "fork", "to": "approve"},
                {"from": "fork", "to": "cool_off"},
                {"from": "approve", "to": "join"},
                {"from": "cool_off", "to": "join"},
                {"from": "join", "to": "done"},
            ],
        },
    )
    instance_id = await orchestra.start(definition_id)
    state = await orchestra.get(instance_id)
    by_node = {token.node_id: token for token in state.tokens}
    assert sorted(by_node) == ["approve", "cool_off"]
    assert by_node["approve"].status == "parked"
    assert by_node["cool_off"].status == "waiting"
    assert by_node["cool_off"].HasField("due_at")
    # A waiting token is not signalled.
    with pytest.raises(ApiError) as refused:
        await orchestra.signal(by_node["cool_off"].id)
    assert refused.value.code == "FAILED_PRECONDITION"
    deadline = time.monotonic() + 5  # the server's loop fires the due timer (~1 s)
    while time.monotonic() < deadline:
        state = await orchestra.get(instance_id)
        if {token.node_id for token in state.tokens} == {"approve", "join"}:
            break
        await asyncio.sleep(0.05)
    assert {t.node_id: t.status for t in state.tokens} == {"approve": "parked", "join": "waiting"}
    assert await orchestra.signal(by_node["approve"].id) == "signalled"
    state = await orchestra.get(instance_id)
    assert state.status == "completed"
    assert list(state.tokens) == []
    kinds = [kind for kind, _ in await _events_of(app, instance_id)]
    assert kinds.count("orchestra.token.timer_fired") == 1
    assert kinds[-1] == "orchestra.instance.completed"


async def test_service_task_job_result_merges(
    app: Application, orchestra: Orchestra, worker: Worker, tenant: str
) -> None:
    job_type = f"double.{uuid.uuid4().hex[:6]}"
    definition_id = _unique("service")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "double", "type": "service_task", "job_type": job_type},
                {"id": "route", "type": "exclusive_gateway", "default": "big"},
                {"id": "done", "type": "end"},
                {"id": "big", "type": "end"},
            ],
            "flows": [
                {"from": "start", "to": "double"},
                {"from": "double", "to": "route"},
                # The result's numbers arrive as protobuf doubles: 42 must stay an int
                # for CEL to compare it with 100.
                {"from": "route", "to": "done", "condition": "doubled < 100"},
                {"from": "route", "to": "big"},
            ],
        },
    )
    instance_id = await orchestra.start(definition_id, {"n": 21})
    [token] = (await orchestra.get(instance_id)).tokens
    assert (token.node_id, token.status) == ("double", "waiting")
    async with app.db.read() as conn:
        job = (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == token.job_id))).one()
        source = (
            await conn.execute(sa.select(_sources).where(_sources.c.source_id == job.source_id))
        ).one()
    assert (job.tenant_id, job.job_type, job.status) == (tenant, job_type, "queued")
    assert json.loads(job.payload) == {"n": 21}
    assert job.owner == f"orchestra-tokens/{token.id}"
    assert (source.name, source.source_type, source.tenant_id) == ("orchestra", "orchestra", tenant)

    [lease] = await worker.lease(job_type)
    assert lease.job.job_id == token.job_id
    await worker.complete(lease.token, {"doubled": 42, "n": 22})
    state = await orchestra.wait(instance_id, "completed")
    assert state.status == "completed"
    assert await orchestra.variables(instance_id) == {"n": 22, "doubled": 42}
    events = await _events_of(app, instance_id)
    assert (
        "orchestra.token.entered",
        {"token_id": ANY, "node_id": "done", "node_type": "end"},
    ) in events
    ended = [data for kind, data in events if kind == "orchestra.token.job_ended"]
    assert ended == [
        {
            "token_id": token.id,
            "node_id": "double",
            "job_id": token.job_id,
            "job_status": "succeeded",
        }
    ]


async def test_dead_lettered_job_fails_the_instance_with_an_incident(
    app: Application, orchestra: Orchestra, worker: Worker
) -> None:
    job_type = f"flaky.{uuid.uuid4().hex[:6]}"
    definition_id = _unique("deadletter")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "call", "type": "service_task", "job_type": job_type},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "call"}, {"from": "call", "to": "done"}],
        },
    )
    instance_id = await orchestra.start(definition_id)
    [lease] = await worker.lease(job_type)
    await worker.fail(lease.token)
    state = await orchestra.wait(instance_id, "failed")
    assert state.status == "failed"
    assert list(state.tokens) == []
    assert state.incident.kind == "job_dead_lettered"
    assert state.incident.node_id == "call"
    assert state.incident.job_id == lease.job.job_id
    assert state.incident.message == (
        f"job {lease.job.job_id!r} was dead-lettered: dependency DOWN it broke"
    )


async def _one_service_task(app: Application, name: str) -> tuple[str, str]:
    """A new definition start -> service task -> end: its id and the task's job type."""
    job_type = f"{name}.{uuid.uuid4().hex[:6]}"
    definition_id = _unique(name)
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "call", "type": "service_task", "job_type": job_type},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "call"}, {"from": "call", "to": "done"}],
        },
    )
    return definition_id, job_type


@contextlib.asynccontextmanager
async def _runner_stopped(app: Application) -> AsyncIterator[OrchestraRunner]:
    """The server's engine loop stopped (no pass, no hints) for the block's duration."""
    runner = app.orchestra
    assert runner is not None
    await runner.stop()
    try:
        yield runner
    finally:
        runner.start()


async def test_a_service_task_start_reads_its_source_once_and_writes_events_once(
    app: Application, orchestra: Orchestra
) -> None:
    """The start's job is enqueued with the source state the engine read for it, and
    its event is written with the instance's, in one INSERT, job event first."""
    definition_id, job_type = await _one_service_task(app, "lean")
    await orchestra.start(definition_id)  # the tenant's service source exists now
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FROM sources" in statement or "INSERT INTO events" in statement:
            statements.append(statement.split()[0])

    engine = app.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        instance_id = await orchestra.start(definition_id)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert statements == ["SELECT", "INSERT"]
    events = await _events_of(app, instance_id)
    [job_id] = [data["job_id"] for kind, data in events if "job_id" in data]
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_events.c.subject, _events.c.type)
                .where(
                    _events.c.subject.in_([f"jobs/{job_id}", f"orchestra-instances/{instance_id}"])
                )
                .order_by(_events.c.event_id)
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (f"jobs/{job_id}", "job.enqueued"),
        *((f"orchestra-instances/{instance_id}", kind) for kind, _ in events),
    ]
    job = await _job_row(app, job_id)
    assert (job.job_type, job.status) == (job_type, "queued")


async def test_job_endings_are_reconciled_without_hints(
    app: Application, orchestra: Orchestra, worker: Worker
) -> None:
    """The loop finds an ended job from the tables alone (another replica's completion,
    a restart): with the runner stopped, the job completes; a new pass moves the token."""
    definition_id, job_type = await _one_service_task(app, "quiet")
    async with _runner_stopped(app) as runner:
        instance_id = await orchestra.start(definition_id)
        [lease] = await worker.lease(job_type)
        await worker.complete(lease.token, {"ok": True})
        await asyncio.sleep(0.2)
        assert (await orchestra.get(instance_id)).status == "running"
        assert await runner.run_once() >= 1
        assert (await orchestra.get(instance_id)).status == "completed"
        assert await orchestra.variables(instance_id) == {"ok": True}


async def test_a_pass_moves_the_tokens_of_different_instances_at_once(
    app: Application, orchestra: Orchestra, worker: Worker
) -> None:
    """One after another, the engine's loop waited behind every request between two of
    its statements and fell behind a steady stream of starts; the tokens of different
    instances now move RELEASE_CONCURRENCY at a time, each in its own transaction
    (counted between its instance lock and its commit); on SQLite, one writer, one
    at a time."""
    definition_id, job_type = await _one_service_task(app, "many")
    count = 2 * RELEASE_CONCURRENCY
    async with _runner_stopped(app) as runner:
        started = [await orchestra.start(definition_id) for _ in range(count)]
        leases = await worker.lease(job_type, max_jobs=count)
        assert len(leases) == count
        for lease in leases:
            await worker.complete(lease.token, {"ok": True})
        holding: set[int] = set()
        peak = 0

        def executing(conn: object, _cursor: object, statement: str, *_: object) -> None:
            nonlocal peak
            text = statement.lstrip()
            if text.startswith("UPDATE orchestra_instances") or (
                "FROM orchestra_instances" in text and "FOR UPDATE" in text
            ):  # the instance's lock: FOR UPDATE, or SQLite's write lock
                holding.add(id(conn))
                peak = max(peak, len(holding))

        def ended(conn: object) -> None:
            holding.discard(id(conn))

        engine = app.db.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", executing)
        sa.event.listen(engine, "commit", ended)
        sa.event.listen(engine, "rollback", ended)
        try:
            assert await runner.run_once() == count
        finally:
            sa.event.remove(engine, "before_cursor_execute", executing)
            sa.event.remove(engine, "commit", ended)
            sa.event.remove(engine, "rollback", ended)
        assert peak == (1 if app.db.is_sqlite else RELEASE_CONCURRENCY)
        for instance_id in started:
            assert (await orchestra.get(instance_id)).status == "completed"


async def test_one_pass_moves_both_ended_branches_of_one_instance(
    app: Application, orchestra: Orchestra, worker: Worker
) -> None:
    """Two tokens of one instance whose jobs ended go one after the other in the same
    pass: at once, the second would skip the instance row the first holds and wait
    for the next full pass."""
    job_type = f"branches.{uuid.uuid4().hex[:6]}"
    definition_id = _unique("branches")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "fork", "type": "parallel_gateway"},
                {"id": "left", "type": "service_task", "job_type": job_type},
                {"id": "right", "type": "service_task", "job_type": job_type},
                {"id": "join", "type": "parallel_gateway"},
                {"id": "done", "type": "end"},
            ],
            "flows": [
                {"from": "start", "to": "fork"},
                {"from": "fork", "to": "left"},
                {"from": "fork", "to": "right"},
                {"from": "left", "to": "join"},
                {"from": "right", "to": "join"},
                {"from": "join", "to": "done"},
            ],
        },
    )
    async with _runner_stopped(app) as runner:
        instance_id = await orchestra.start(definition_id)
        leases = await worker.lease(job_type, max_jobs=2)
        assert len(leases) == 2
        for lease in leases:
            await worker.complete(lease.token, {"ok": True})
        assert await runner.run_once() == 2
        state = await orchestra.get(instance_id)
        assert state.status == "completed"
        assert list(state.tokens) == []


async def test_a_hinted_pass_moves_only_the_hinted_jobs_tokens(
    app: Application, orchestra: Orchestra, worker: Worker
) -> None:
    """A pass woken by ending hints reads only the hinted jobs' tokens; a token whose
    job ended without a hint here waits for the next full pass."""
    definition_id, job_type = await _one_service_task(app, "hinted")
    async with _runner_stopped(app) as runner:
        first = await orchestra.start(definition_id)
        second = await orchestra.start(definition_id)
        leases = {lease.job.job_id: lease for lease in await worker.lease(job_type)}
        assert len(leases) == 2
        for lease in leases.values():
            await worker.complete(lease.token, {"ok": True})
        jobs = {
            instance: (await orchestra.get(instance)).tokens[0].job_id
            for instance in (first, second)
        }
        assert set(jobs.values()) == set(leases)
        assert await runner.run_hinted([jobs[first], "a-job-that-never-was"]) == 1
        assert (await orchestra.get(first)).status == "completed"
        assert (await orchestra.get(second)).status == "running"
        assert await runner.run_hinted([]) == 0
        assert await runner.run_once() == 1
        assert (await orchestra.get(second)).status == "completed"


async def test_two_concurrent_signals_exactly_one_wins(
    app: Application, http_base: str, tokens: TokenFactory, tenant: str
) -> None:
    definition_id = _unique("race")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "task", "type": "user_task"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "task"}, {"from": "task", "to": "done"}],
        },
    )
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=http_base, headers=headers, timeout=30) as one,
        httpx.AsyncClient(base_url=http_base, headers=headers, timeout=30) as two,
    ):
        for _ in range(15):
            started = await one.post(f"/orchestra-api/process/{definition_id}/start", json={})
            instance_id = started.json()["instance_id"]
            state = (await one.get(f"/orchestra-api/instance/{instance_id}")).json()
            path = f"/orchestra-api/token/{state['tokens'][0]['id']}/signal"
            first, second = await asyncio.gather(one.post(path), two.post(path))
            assert sorted([first.status_code, second.status_code]) == [200, 422], (
                first.text,
                second.text,
            )
            loser = first if first.status_code == 422 else second
            assert loser.json()["code"] in ("FAILED_PRECONDITION", "NOT_FOUND")
            kinds = [kind for kind, _ in await _events_of(app, instance_id)]
            assert kinds.count("orchestra.token.signalled") == 1
            assert kinds.count("orchestra.instance.completed") == 1


async def test_cancel_over_grpc(app: Application, orchestra: Orchestra) -> None:
    definition_id = _unique("cancel")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "task", "type": "user_task"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "task"}, {"from": "task", "to": "done"}],
        },
    )
    instance_id = await orchestra.start(definition_id)
    [token] = (await orchestra.get(instance_id)).tokens
    # A reason is one line of the cancel event: a 1 MB one with controls was stored whole.
    for reason, words in (
        ("y" * 257, "reason: must be at most 256 characters, got 257"),
        ("x\x00\x1b[2J", "reason: must not contain control characters"),
    ):
        with pytest.raises(ApiError) as bad:
            await orchestra.cancel(instance_id, reason=reason)
        assert (bad.value.code, bad.value.message) == ("INVALID_ARGUMENT", words)
    assert (await orchestra.get(instance_id)).status == "running"
    canceled = await orchestra.cancel(instance_id, reason="customer withdrew")
    assert canceled.status == "canceled"
    assert list(canceled.tokens) == []
    again = await orchestra.cancel(instance_id)
    assert again.status == "canceled"
    with pytest.raises(ApiError) as refused:
        await orchestra.signal(token.id)
    assert refused.value.code in ("NOT_FOUND", "FAILED_PRECONDITION")
    events = await _events_of(app, instance_id)
    assert [data for kind, data in events if kind == "orchestra.instance.canceled"] == [
        {"reason": "customer withdrew"}
    ]
    done = await orchestra.start(definition_id)
    [token] = (await orchestra.get(done)).tokens
    await orchestra.signal(token.id)
    with pytest.raises(ApiError) as finished:
        await orchestra.cancel(done)
    assert finished.value.code == "FAILED_PRECONDITION"
    with pytest.raises(ApiError) as absent:
        await orchestra.cancel(str(uuid.uuid4()))
    assert absent.value.code == "NOT_FOUND"


async def test_a_new_version_never_changes_running_instances(
    app: Application, orchestra: Orchestra
) -> None:
    definition_id = _unique("versions")

    def version(end: str) -> dict[str, Any]:
        return {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "task", "type": "user_task"},
                {"id": end, "type": "end"},
            ],
            "flows": [{"from": "start", "to": "task"}, {"from": "task", "to": end}],
        }

    first = await load_definition(app, version("old_end"))
    assert first.definition.version == 1
    old = await orchestra.start(definition_id)
    second = await load_definition(app, version("new_end"))
    assert second.definition.version == 2
    new = await orchestra.start(definition_id)
    old_state, new_state = await orchestra.get(old), await orchestra.get(new)
    assert (old_state.definition_version, new_state.definition_version) == (1, 2)
    await orchestra.signal(old_state.tokens[0].id)
    await orchestra.signal(new_state.tokens[0].id)
    old_nodes = [data.get("node_id") for kind, data in await _events_of(app, old)]
    new_nodes = [data.get("node_id") for kind, data in await _events_of(app, new)]
    assert "old_end" in old_nodes and "new_end" not in old_nodes
    assert "new_end" in new_nodes and "old_end" not in new_nodes


async def test_cancel_and_failure_cancel_the_jobs_of_dropped_tokens(
    app: Application, orchestra: Orchestra, worker: Worker
) -> None:
    """A canceled instance's service-task job is canceled with it (nobody would take its
    result), as is a parallel branch's job when another branch fails the instance."""
    job_type = f"dropped.{uuid.uuid4().hex[:6]}"
    failing = f"failing.{uuid.uuid4().hex[:6]}"
    definition_id = _unique("dropped")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "fork", "type": "parallel_gateway"},
                {"id": "slow", "type": "service_task", "job_type": job_type},
                {"id": "fails", "type": "service_task", "job_type": failing},
                {"id": "join", "type": "parallel_gateway"},
                {"id": "done", "type": "end"},
            ],
            "flows": [
                {"from": "start", "to": "fork"},
                {"from": "fork", "to": "slow"},
                {"from": "fork", "to": "fails"},
                {"from": "slow", "to": "join"},
                {"from": "fails", "to": "join"},
                {"from": "join", "to": "done"},
            ],
        },
    )

    async def job_of(instance_id: str, node_id: str) -> Any:
        state = await orchestra.get(instance_id)
        job_id = next(t.job_id for t in state.tokens if t.node_id == node_id)
        async with app.db.read() as conn:
            return (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id))).one()

    canceled = await orchestra.start(definition_id)
    slow = await job_of(canceled, "slow")
    await orchestra.cancel(canceled, reason="not needed")
    async with app.db.read() as conn:
        after = (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == slow.job_id))).one()
        kinds = (
            await conn.execute(
                sa.select(_events.c.type).where(_events.c.subject == f"jobs/{slow.job_id}")
            )
        ).scalars()
        assert "job.canceled" in list(kinds)
    assert after.status == "canceled"

    failed = await orchestra.start(definition_id)
    slow = await job_of(failed, "slow")
    [lease] = await worker.lease(failing)
    await worker.fail(lease.token)
    state = await orchestra.wait(failed, "failed")
    assert state.incident.node_id == "fails"
    async with app.db.read() as conn:
        after = (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == slow.job_id))).one()
    assert after.status == "canceled"
    assert await worker.lease(job_type, wait=0.2) == []


async def test_the_instance_list_is_bounded_newest_first(
    app: Application, orchestra: Orchestra, tenant: str
) -> None:
    """The seed's bare array has no paging: the domain answers at most `limit` (LIST_MAX
    over the API) instances, the newest, in order."""
    definition_id = _unique("bounded")
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "task", "type": "user_task"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "task"}, {"from": "task", "to": "done"}],
        },
    )
    started = [await orchestra.start(definition_id) for _ in range(3)]
    call = CallContext(method="ListInstances", trace_id="0" * 32, tenant_id=tenant)
    listed = await list_instances(
        SqlOrchestraStore(app.store), call, definition_id=definition_id, status="", limit=2
    )
    assert [row.instance_id for row in listed] == [started[2], started[1]]
    assert LIST_MAX == 10_000
