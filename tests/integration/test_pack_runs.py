"""Pack runs end to end (issue 10 point 4 and its bad input): over gRPC, REST and
in-process, on SQLite and PostgreSQL, checked against the stored rows, events and
audit entries. Jobs are leased, completed and failed over the real WorkerService;
the server's own engine advances the runs (the job-ending hint, then its loop).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from clients.base import CallerHeaders, ServiceClient
from clients.errors import ApiError
from clients.sources import SourcesClient
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import pack_run_pb2
from orchestrator.jobengine.v1 import pack_runs_service_pb2 as pb
from orchestrator.jobengine.v1 import worker_service_pb2 as wpb
from server.app import Application
from server.storage.tables import (
    AuditEntryRow,
    EventRow,
    JobRow,
    PackRunJobRow,
    PackRunRow,
    table_of,
)
from tests.integration.test_workers import WorkerCalls
from tests.support.auth import TokenFactory

_runs = table_of(PackRunRow)
_steps = table_of(PackRunJobRow)
_jobs = table_of(JobRow)
_events = table_of(EventRow)
_audit = table_of(AuditEntryRow)
BACKFILL_REASON = "rerun the nightly pack"
BACKFILL_TICKET = "OPS-42"


class PackRuns(ServiceClient):
    """The PackRunsService methods as they are on the wire."""

    service = pb.DESCRIPTOR.services_by_name["PackRunsService"]

    async def create(self, name: str, jobs: Sequence[pack_run_pb2.PackJob]) -> pack_run_pb2.PackRun:
        request = pb.CreatePackRunRequest(pack_run=pack_run_pb2.PackRun(pack_name=name, jobs=jobs))
        return (await self.call("CreatePackRun", request, pb.CreatePackRunResponse)).pack_run

    async def get(self, pack_run_id: str) -> pack_run_pb2.PackRun:
        request = pb.GetPackRunRequest(pack_run_id=pack_run_id)
        return (await self.call("GetPackRun", request, pb.GetPackRunResponse)).pack_run

    async def list(self, **fields: Any) -> pb.ListPackRunsResponse:
        request = pb.ListPackRunsRequest(**fields)
        return await self.call("ListPackRuns", request, pb.ListPackRunsResponse)

    async def cancel(self, pack_run_id: str) -> pb.CancelPackRunResponse:
        request = pb.CancelPackRunRequest(pack_run_id=pack_run_id)
        return await self.call("CancelPackRun", request, pb.CancelPackRunResponse)

    async def retry(self, pack_run_id: str) -> pack_run_pb2.PackRun:
        request = pb.RetryPackRunRequest(pack_run_id=pack_run_id)
        return (await self.call("RetryPackRun", request, pb.RetryPackRunResponse)).pack_run


def job(
    name: str, job_type: str, source_id: str, *deps: str, payload: Any = None, **fields: Any
) -> pack_run_pb2.PackJob:
    message = pack_run_pb2.PackJob(
        name=name, job_type=job_type, source_id=source_id, depends_on=deps, **fields
    )
    if payload is not None:
        value = struct_pb2.Value()
        value.struct_value.update(payload)
        message.payload.CopyFrom(value)
    return message


@dataclass
class Scene:
    app: Application
    tenant: str
    source_id: str
    job_type: str
    packs: PackRuns  # over the test's transport
    backfill: PackRuns  # same transport, a token with orch:backfill
    workers: WorkerCalls  # gRPC

    def diamond(self) -> list[pack_run_pb2.PackJob]:
        """a; b and c after a; d after b and c."""
        t, s = self.job_type, self.source_id
        return [
            job("a", t, s, payload={"step": "a"}),
            job("b", t, s, "a"),
            job("c", t, s, "a"),
            job("d", t, s, "b", "c"),
        ]

    async def lease(self, n: int) -> list[wpb.Lease]:
        leases = await self.workers.lease([self.job_type], max_jobs=10)
        assert len(leases) == n, [lease.job.job_id for lease in leases]
        return leases

    async def settle(self, pack_run_id: str, **expected: str) -> pack_run_pb2.PackRun:
        """The run once its jobs have the `expected` statuses (name -> status): the
        engine advances it on the job-ending hint, at the latest on its next pass."""
        deadline = time.monotonic() + 15
        while True:
            run = await self.packs.get(pack_run_id)
            now = {j.name: j.status for j in run.jobs}
            if all(now[name] == status for name, status in expected.items()):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run jobs are {now}, expected {expected}")
            await asyncio.sleep(0.05)

    async def rows(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[Any]:
        async with self.app.db.read() as conn:
            return list((await conn.execute(sa.select(table).where(*where))).all())

    async def run_events(self, pack_run_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.rows(_events, _events.c.subject == f"packRuns/{pack_run_id}")
        rows.sort(key=lambda r: r.event_id)
        return [(r.type, json.loads(r.data)) for r in rows]


@pytest.fixture
async def scene(
    app: Application,
    transport: Transport,
    grpc_target: str,
    tenant: str,
    access_token: str,
    tokens: TokenFactory,
) -> AsyncIterator[Scene]:
    headers = CallerHeaders(tenant=tenant, access_token=access_token, operator_reason="test run")
    backfill_token = await tokens.token(
        tenant,
        ("orch:read", "orch:operate", "orch:backfill"),
        backfill_reason=BACKFILL_REASON,
        backfill_ticket=BACKFILL_TICKET,
    )
    backfill_headers = CallerHeaders(
        tenant=tenant, access_token=backfill_token, operator_reason="retry it"
    )
    grpc = GrpcTransport(grpc_target)
    try:
        source = await SourcesClient(grpc, headers).register_source("packs", "manual")
        yield Scene(
            app=app,
            tenant=tenant,
            source_id=source.source_id,
            job_type=f"pack.{uuid.uuid4().hex[:8]}",
            packs=PackRuns(transport, headers),
            backfill=PackRuns(transport, backfill_headers),
            workers=WorkerCalls(grpc, headers),
        )
    finally:
        await grpc.close()


def statuses(run: pack_run_pb2.PackRun) -> dict[str, str]:
    return {j.name: j.status for j in run.jobs}


def counts(run: pack_run_pb2.PackRun) -> dict[str, int]:
    c = run.counts
    return {
        "pending": c.pending,
        "running": c.running,
        "succeeded": c.succeeded,
        "failed": c.failed,
        "canceled": c.canceled,
        "skipped": c.skipped,
        "total": c.total,
    }


async def test_a_pack_runs_in_dependency_order(scene: Scene) -> None:
    run = await scene.packs.create("nightly", scene.diamond())
    assert run.status == "running"
    assert run.pack_name == "nightly"
    assert statuses(run) == {"a": "running", "b": "pending", "c": "pending", "d": "pending"}
    assert counts(run) == {
        "pending": 3,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
        "skipped": 0,
        "total": 4,
    }
    a = run.jobs[0]
    assert a.HasField("job_id") and a.job_status == "queued" and a.HasField("started_at")
    assert not run.jobs[1].HasField("job_id")
    assert list(run.jobs[3].depends_on) == ["b", "c"]
    assert a.payload.struct_value["step"] == "a"
    assert a.max_attempts == 3  # the defaults, applied

    [stored] = await scene.rows(_runs, _runs.c.pack_run_id == run.pack_run_id)
    assert (stored.tenant_id, stored.status, stored.pack_name) == (
        scene.tenant,
        "running",
        "nightly",
    )
    [queued] = await scene.rows(_jobs, _jobs.c.job_id == a.job_id)
    assert (queued.pack_run_id, queued.status, queued.job_type) == (
        run.pack_run_id,
        "queued",
        scene.job_type,
    )
    [entry] = await scene.rows(_audit, _audit.c.resource == f"packRuns/{run.pack_run_id}")
    assert entry.action == "packRuns.create"
    assert entry.reason == "test run"
    assert json.loads(entry.after)["counts"]["total"] == 4

    # a first, alone
    [lease_a] = await scene.lease(1)
    assert lease_a.job.job_id == a.job_id
    await scene.workers.complete((lease_a.token, {"done": "a"}))
    run = await scene.settle(run.pack_run_id, a="succeeded", b="running", c="running")
    assert run.jobs[0].job_status == "succeeded"
    assert run.jobs[0].attempts == 1
    # then b and c together; d waits for both
    leases = await scene.lease(2)
    assert {lease.job.job_id for lease in leases} == {run.jobs[1].job_id, run.jobs[2].job_id}
    await scene.workers.complete((leases[0].token, None))
    run = await scene.settle(run.pack_run_id, d="pending")
    assert statuses(run)["d"] == "pending"
    await scene.workers.complete((leases[1].token, None))
    run = await scene.settle(run.pack_run_id, b="succeeded", c="succeeded", d="running")
    [lease_d] = await scene.lease(1)
    assert lease_d.job.job_id == run.jobs[3].job_id
    for j in run.jobs[:3]:  # d was enqueued after the jobs it waits for finished
        assert run.jobs[3].started_at.ToDatetime() >= j.finished_at.ToDatetime()
    await scene.workers.complete((lease_d.token, None))
    run = await scene.settle(run.pack_run_id, d="succeeded")
    assert run.status == "succeeded"
    assert run.HasField("finished_at")
    assert counts(run)["succeeded"] == 4
    events = await scene.run_events(run.pack_run_id)
    assert [kind for kind, _ in events] == [
        "pack_run.created",
        "pack_run.job_started",
        "pack_run.job_finished",
        "pack_run.job_started",
        "pack_run.job_started",
        "pack_run.job_finished",
        "pack_run.job_finished",
        "pack_run.job_started",
        "pack_run.job_finished",
        "pack_run.succeeded",
    ]
    assert events[0][1] == {"packName": "nightly", "jobs": 4}
    assert events[-1][1] == {"from": "running", "to": "succeeded"}


async def test_a_failed_job_skips_its_dependents_and_fails_the_run(scene: Scene) -> None:
    t, s = scene.job_type, scene.source_id
    run = await scene.packs.create(
        "fragile", [job("a", t, s), job("b", t, s), job("c", t, s, "a"), job("d", t, s, "c")]
    )
    leases = await scene.lease(2)
    by_job = {lease.job.job_id: lease for lease in leases}
    lease_a, lease_b = by_job[run.jobs[0].job_id], by_job[run.jobs[1].job_id]
    await scene.workers.fail(
        wpb.JobFailure(token=lease_a.token, category="validation", code="BAD", retryable=False)
    )
    run = await scene.settle(run.pack_run_id, a="failed", c="skipped", d="skipped")
    assert run.status == "running"  # b still runs
    assert run.jobs[0].job_status == "dead_lettered"
    assert not run.jobs[2].HasField("job_id")
    await scene.workers.complete((lease_b.token, None))
    run = await scene.settle(run.pack_run_id, b="succeeded")
    assert run.status == "failed"
    assert counts(run) == {
        "pending": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "canceled": 0,
        "skipped": 2,
        "total": 4,
    }
    assert (await scene.run_events(run.pack_run_id))[-1] == (
        "pack_run.failed",
        {"from": "running", "to": "failed"},
    )


async def test_cancel_mid_run(scene: Scene) -> None:
    t, s = scene.job_type, scene.source_id
    run = await scene.packs.create(
        "long",
        [job("leased", t, s), job("queued", t + ".q", s), job("later", t, s, "leased")],
    )
    [lease] = await scene.lease(1)
    answer = await scene.packs.cancel(run.pack_run_id)
    assert (answer.canceled_jobs, answer.canceled_pending) == (2, 1)
    run = answer.pack_run
    assert run.status == "canceled"
    assert statuses(run) == {"leased": "canceled", "queued": "canceled", "later": "canceled"}
    # the answer shows the jobs it canceled as canceled, not as read before the cancel
    assert {j.name: j.job_status for j in run.jobs} == {
        "leased": "canceled",
        "queued": "canceled",
        "later": "",
    }
    assert counts(run)["canceled"] == 3
    assert run.HasField("finished_at")
    rows = {r.job_id: r for r in await scene.rows(_jobs, _jobs.c.pack_run_id == run.pack_run_id)}
    assert {r.status for r in rows.values()} == {"canceled"}
    assert len(rows) == 2  # the pending job was never enqueued
    # the leased job's worker learns it on its next heartbeat; its completion is refused
    [beat] = await scene.workers.heartbeat([lease.token])
    assert beat.status.code == code_pb2.CANCELLED
    [refused] = await scene.workers.complete((lease.token, None))
    assert refused.status.code == code_pb2.FAILED_PRECONDITION
    assert refused.status.message == f"job {lease.job.job_id!r} was canceled"
    [entry] = await scene.rows(
        _audit,
        _audit.c.resource == f"packRuns/{run.pack_run_id}",
        _audit.c.action == "packRuns.cancel",
    )
    assert json.loads(entry.before)["status"] == "running"
    assert json.loads(entry.after)["status"] == "canceled"

    with pytest.raises(ApiError) as caught:
        await scene.packs.cancel(run.pack_run_id)
    error = caught.value
    assert error.code == "FAILED_PRECONDITION"
    assert error.message == "pack run is canceled; only a running pack run can be canceled"
    info = error.detail("ErrorInfo")
    assert info is not None
    assert info["reason"] == "PACK_RUN_STATUS_CONFLICT"
    assert info["metadata"]["status"] == "canceled"
    if error.http_status is not None:
        assert error.http_status == 409


async def test_retry_of_a_failed_run(scene: Scene) -> None:
    t, s = scene.job_type, scene.source_id
    first = await scene.packs.create(
        "retried",
        [job("a", t, s), job("b", t, s, "a"), job("c", t, s, "b"), job("e", t, s)],
    )
    leases = await scene.lease(2)
    by_job = {lease.job.job_id: lease for lease in leases}
    await scene.workers.complete((by_job[first.jobs[0].job_id].token, None))
    await scene.workers.fail(
        wpb.JobFailure(
            token=by_job[first.jobs[3].job_id].token, category="x", code="Y", retryable=False
        )
    )
    await scene.settle(first.pack_run_id, a="succeeded", b="running", e="failed")
    [lease_b] = await scene.lease(1)
    await scene.workers.fail(
        wpb.JobFailure(token=lease_b.token, category="x", code="Y", retryable=False)
    )
    first = await scene.settle(first.pack_run_id, b="failed", c="skipped")
    assert first.status == "failed"

    with pytest.raises(ApiError) as caught:
        await scene.packs.retry(first.pack_run_id)  # orch:operate is not enough
    assert caught.value.code == "PERMISSION_DENIED"

    second = await scene.backfill.retry(first.pack_run_id)
    assert second.retry_of == first.pack_run_id
    assert second.pack_name == "retried"
    assert second.status == "running"
    # the jobs that did not succeed, in the pack's order; b's dependency on a is met
    assert [(j.name, list(j.depends_on), j.status) for j in second.jobs] == [
        ("b", [], "running"),
        ("c", ["b"], "pending"),
        ("e", [], "running"),
    ]
    first = await scene.packs.get(first.pack_run_id)
    assert first.retried_by == second.pack_run_id
    [entry] = await scene.rows(
        _audit,
        _audit.c.resource == f"packRuns/{first.pack_run_id}",
        _audit.c.action == "packRuns.retry",
    )
    assert (entry.backfill_reason, entry.backfill_ticket) == (BACKFILL_REASON, BACKFILL_TICKET)
    assert entry.reason == "retry it"
    assert json.loads(entry.after)["retriedBy"] == second.pack_run_id

    leases = await scene.lease(2)
    for lease in leases:
        await scene.workers.complete((lease.token, None))
    await scene.settle(second.pack_run_id, b="succeeded", e="succeeded", c="running")
    [lease_c] = await scene.lease(1)
    await scene.workers.complete((lease_c.token, None))
    second = await scene.settle(second.pack_run_id, c="succeeded")
    assert second.status == "succeeded"

    with pytest.raises(ApiError) as caught:
        await scene.backfill.retry(first.pack_run_id)
    info = caught.value.detail("ErrorInfo")
    assert caught.value.code == "FAILED_PRECONDITION"
    assert info is not None and info["reason"] == "PACK_RUN_ALREADY_RETRIED"
    assert info["metadata"]["retriedBy"] == second.pack_run_id
    with pytest.raises(ApiError) as caught:
        await scene.backfill.retry(second.pack_run_id)
    assert caught.value.code == "FAILED_PRECONDITION"
    assert caught.value.message == (
        "pack run is succeeded; only a failed or canceled pack run can be retried"
    )
    if caught.value.http_status is not None:
        assert caught.value.http_status == 409


async def test_retry_of_a_canceled_run_and_of_a_running_one(scene: Scene) -> None:
    t, s = scene.job_type, scene.source_id
    run = await scene.packs.create("stop", [job("a", t, s), job("b", t, s, "a")])
    with pytest.raises(ApiError) as caught:
        await scene.backfill.retry(run.pack_run_id)
    assert caught.value.code == "FAILED_PRECONDITION"
    info = caught.value.detail("ErrorInfo")
    assert info is not None and info["metadata"]["status"] == "running"
    await scene.packs.cancel(run.pack_run_id)
    again = await scene.backfill.retry(run.pack_run_id)
    assert [(j.name, list(j.depends_on), j.status) for j in again.jobs] == [
        ("a", [], "running"),
        ("b", ["a"], "pending"),
    ]


async def _tenant_rows(scene: Scene) -> tuple[int, int, int]:
    async with scene.app.db.read() as conn:
        runs = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_runs)
                .where(_runs.c.tenant_id == scene.tenant)
            )
        ).scalar_one()
        steps = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_steps)
                .where(_steps.c.tenant_id == scene.tenant)
            )
        ).scalar_one()
        jobs = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_jobs)
                .where(_jobs.c.tenant_id == scene.tenant)
            )
        ).scalar_one()
    return runs, steps, jobs


async def _refused(scene: Scene, name: str, jobs: Sequence[pack_run_pb2.PackJob]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await scene.packs.create(name, jobs)
    return caught.value


def violations(error: ApiError) -> list[tuple[str, str]]:
    bad = error.detail("BadRequest")
    assert bad is not None, error
    return [(v["field"], v["description"]) for v in bad["fieldViolations"]]


async def test_bad_packs_are_400_naming_the_field_and_write_nothing(scene: Scene) -> None:
    t, s = scene.job_type, scene.source_id
    cycle = await _refused(
        scene, "p", [job("a", t, s, "c"), job("b", t, s, "a"), job("c", t, s, "b")]
    )
    assert cycle.code == "INVALID_ARGUMENT"
    assert violations(cycle) == [
        ("jobs[0].dependsOn", "forms a dependency cycle: a -> c -> b -> a")
    ]
    if cycle.http_status is not None:
        assert cycle.http_status == 400

    wrong = await _refused(
        scene,
        "",
        [
            job("a", t, s, "a"),
            job("a", "Bad Type", s),
            job("c", t, s, "zz", "b", "b"),
            job("Upper", t, s, max_attempts=500),
        ],
    )
    assert violations(wrong) == [
        ("packName", "is required"),
        ("jobs[1].name", "'a' is already the name of jobs[0]"),
        (
            "jobs[3].name",
            "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or "
            "'-', got 'Upper'",
        ),
        (
            "jobs[1].jobType",
            "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or "
            "'-', got 'Bad Type'",
        ),
        ("jobs[3].maxAttempts", "must be between 1 and 100, got 500"),
        ("jobs[0].dependsOn[0]", "a job cannot depend on itself"),
        ("jobs[2].dependsOn[0]", "names no job of the pack: 'zz'"),
        ("jobs[2].dependsOn[1]", "names no job of the pack: 'b'"),
        ("jobs[2].dependsOn[2]", "names no job of the pack: 'b'"),
    ]

    long_name = "x" * 5000  # quoted cut to 200 characters and its length
    cut = await _refused(scene, "p", [job("a", t, s, long_name)])
    assert violations(cut) == [
        ("jobs[0].dependsOn[0]", f"names no job of the pack: '{'x' * 200}…' (5000 characters)")
    ]

    empty = await _refused(scene, "p", [])
    assert violations(empty) == [("jobs", "must list at least one job")]
    many = await _refused(scene, "p", [job(f"j{i}", t, s) for i in range(101)])
    assert violations(many) == [("jobs", "must list at most 100 jobs, got 101")]

    unknown = await _refused(scene, "p", [job("a", t, s), job("b", t, "no-such-source")])
    assert unknown.code == "NOT_FOUND"  # as EnqueueJob answers an unknown source
    assert unknown.message == "source 'no-such-source' of jobs[1] not found"
    info = unknown.detail("ErrorInfo")
    assert info is not None and info["reason"] == "SOURCE_NOT_FOUND"
    assert info["metadata"] == {"sourceId": "no-such-source", "job": "b"}
    if unknown.http_status is not None:
        assert unknown.http_status == 404
    assert await _tenant_rows(scene) == (0, 0, 0)


async def test_a_paused_source_is_409_and_writes_nothing(
    scene: Scene, transport: Transport, caller_headers: CallerHeaders
) -> None:
    sources = SourcesClient(transport, caller_headers)
    paused = await sources.register_source("paused-for-packs", "manual")
    await sources.pause_source(paused.source_id)
    t = scene.job_type
    error = await _refused(
        scene, "p", [job("a", t, scene.source_id), job("b", t, paused.source_id)]
    )
    assert error.code == "FAILED_PRECONDITION"
    assert error.message == (
        f"source {paused.source_id!r} of jobs[1] is paused; a pack run cannot enqueue its jobs"
    )
    info = error.detail("ErrorInfo")
    assert info is not None and info["reason"] == "SOURCE_PAUSED"
    if error.http_status is not None:
        assert error.http_status == 409
    assert await _tenant_rows(scene) == (0, 0, 0)


async def test_unknown_and_foreign_runs_are_404(
    scene: Scene, transport: Transport, tokens: TokenFactory
) -> None:
    run = await scene.packs.create("mine", [job("a", scene.job_type, scene.source_id)])
    other = f"t-{uuid.uuid4().hex[:10]}"
    token = await tokens.token(other)
    foreign = PackRuns(
        transport, CallerHeaders(tenant=other, access_token=token, operator_reason="peek")
    )
    for call, target in (
        (foreign.get, run.pack_run_id),
        (foreign.cancel, run.pack_run_id),
        (scene.packs.get, "no-such-run"),
        (scene.packs.get, "not an id"),  # outside the issued alphabet: not found either
        (scene.packs.cancel, "x" * 65),
    ):
        with pytest.raises(ApiError) as caught:
            await call(target)
        assert caught.value.code == "NOT_FOUND"
        assert caught.value.message == f"pack run {target!r} not found"
        info = caught.value.detail("ErrorInfo")
        assert info is not None and info["reason"] == "PACK_RUN_NOT_FOUND"
    assert (await scene.packs.get(run.pack_run_id)).status == "running"


async def test_list_pages_and_filters(scene: Scene) -> None:
    t, s = scene.job_type, scene.source_id
    made = [await scene.packs.create(f"pack-{i % 2}", [job("a", t, s)]) for i in range(5)]
    await scene.packs.cancel(made[1].pack_run_id)
    newest_first = [run.pack_run_id for run in reversed(made)]

    first = await scene.packs.list(limit=2)
    assert [r.pack_run_id for r in first.items] == newest_first[:2]
    assert all(len(r.jobs) == 0 for r in first.items)  # listings carry counts only
    assert first.items[0].counts.total == 1 and first.items[0].counts.running == 1
    second = await scene.packs.list(limit=2, continuation_token=first.continuation_token)
    third = await scene.packs.list(limit=2, continuation_token=second.continuation_token)
    assert [r.pack_run_id for r in [*second.items, *third.items]] == newest_first[2:]
    assert not third.HasField("continuation_token")

    zeros = await scene.packs.list(pack_name="pack-0")
    assert [r.pack_run_id for r in zeros.items] == [
        newest_first[0],
        newest_first[2],
        newest_first[4],
    ]
    canceled = await scene.packs.list(status="canceled")
    assert [(r.pack_run_id, r.counts.canceled) for r in canceled.items] == [
        (made[1].pack_run_id, 1)
    ]

    with pytest.raises(ApiError) as caught:
        await scene.packs.list(status="running", continuation_token=first.continuation_token)
    assert violations(caught.value) == [
        (
            "continuationToken",
            "was issued for a different tenant, filter or sort; start from the first page",
        )
    ]
    with pytest.raises(ApiError) as caught:
        await scene.packs.list(status="done", limit=-1)
    assert violations(caught.value)[0] == (
        "status",
        "must be one of running, succeeded, failed, canceled, got 'done'",
    )


async def test_rest_paths_status_codes_and_the_legacy_prefix(
    scene: Scene, http: httpx.AsyncClient, access_token: str
) -> None:
    headers = {
        "Authorization": f"Bearer {access_token}",
        "X-Stella-Tenant": scene.tenant,
        "X-Stella-Operator-Reason": "rest test",
    }
    body = {
        "packName": "rest-pack",
        "jobs": [
            {"name": "a", "jobType": scene.job_type, "sourceId": scene.source_id},
            {
                "name": "b",
                "jobType": scene.job_type,
                "sourceId": scene.source_id,
                "dependsOn": ["a"],
            },
        ],
    }
    created = await http.post("/jobengine/pack-runs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    run = created.json()
    assert run["status"] == "running"
    assert [(j["name"], j["status"]) for j in run["jobs"]] == [("a", "running"), ("b", "pending")]
    assert run["counts"] == {
        "pending": 1,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
        "skipped": 0,
        "total": 2,
    }
    run_id = run["packRunId"]

    got = await http.get(f"/jobengine/pack-runs/{run_id}", headers=headers)
    assert got.status_code == 200
    assert got.headers["cache-control"] == "private, max-age=60, stale-if-error=300"
    etag = got.headers["etag"]
    again = await http.get(
        f"/jobengine/pack-runs/{run_id}", headers={**headers, "If-None-Match": etag}
    )
    assert again.status_code == 304
    legacy = await http.get(f"/orchestrator/pack-runs/{run_id}", headers=headers)
    assert legacy.status_code == 200
    assert legacy.headers["deprecation"] == "true"
    assert legacy.headers["link"] == (f'</jobengine/pack-runs/{run_id}>; rel="successor-version"')
    assert legacy.json()["packRunId"] == run_id

    canceled = await http.post(f"/orchestrator/pack-runs/{run_id}/cancel", json={}, headers=headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["packRun"]["status"] == "canceled"
    assert (canceled.json()["canceledJobs"], canceled.json()["canceledPending"]) == (1, 1)
    conflict = await http.post(f"/jobengine/pack-runs/{run_id}/cancel", json={}, headers=headers)
    assert conflict.status_code == 409
    assert "pack run is canceled" in conflict.text

    no_reason = {k: v for k, v in headers.items() if k != "X-Stella-Operator-Reason"}
    refused = await http.post("/jobengine/pack-runs", json=body, headers=no_reason)
    assert refused.status_code == 400
