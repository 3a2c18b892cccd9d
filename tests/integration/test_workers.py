"""WorkerService over gRPC on loopback, on SQLite and PostgreSQL: leasing, heartbeats,
completions and failures with their stored rows and events, fencing, concurrent
workers and the long poll (worker_service.proto, issue 9 point 4)."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2, struct_pb2
from google.rpc import code_pb2, error_details_pb2

from clients.base import CallerHeaders, ServiceClient
from clients.errors import ApiError
from clients.jobs import JobsClient, new_job
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import job_pb2
from orchestrator.jobengine.v1 import worker_service_pb2 as pb
from server.app import Application
from server.domain.leasing import RESULT_MAX_BYTES
from server.storage.tables import DeadLetterEntryRow, EventRow, JobRow, table_of
from tests.conftest import settings_for
from tests.support.clock import TestClock

_jobs = table_of(JobRow)
_events = table_of(EventRow)


class WorkerCalls(ServiceClient):
    """The WorkerService methods as they are on the wire (no SDK in between)."""

    service = pb.DESCRIPTOR.services_by_name["WorkerService"]

    async def lease(
        self,
        job_types: Sequence[str],
        *,
        worker_id: str = "w-1",
        max_jobs: int = 10,
        wait: float | None = None,
        lease: float | None = None,
    ) -> list[pb.Lease]:
        request = pb.LeaseJobsRequest(worker_id=worker_id, job_types=job_types, max_jobs=max_jobs)
        if wait is not None:
            request.wait_timeout.CopyFrom(duration(wait))
        if lease is not None:
            request.lease_duration.CopyFrom(duration(lease))
        response = await self.call("LeaseJobs", request, pb.LeaseJobsResponse)
        return list(response.leases)

    async def heartbeat(
        self, tokens: Sequence[pb.FencingToken], *, lease: float | None = None
    ) -> list[pb.HeartbeatResult]:
        request = pb.HeartbeatRequest(worker_id="w-1", tokens=tokens)
        if lease is not None:
            request.lease_duration.CopyFrom(duration(lease))
        return list((await self.call("Heartbeat", request, pb.HeartbeatResponse)).results)

    async def complete(self, *items: tuple[pb.FencingToken, Any]) -> list[pb.JobOutcome]:
        completions = []
        for token, result in items:
            completion = pb.JobCompletion(token=token)
            if result is not None:
                value = struct_pb2.Value()
                value.struct_value.update(result)
                completion.result.CopyFrom(value)
            completions.append(completion)
        request = pb.CompleteJobsRequest(worker_id="w-1", completions=completions)
        return list((await self.call("CompleteJobs", request, pb.CompleteJobsResponse)).results)

    async def fail(self, *failures: pb.JobFailure) -> list[pb.JobOutcome]:
        request = pb.FailJobsRequest(worker_id="w-1", failures=failures)
        return list((await self.call("FailJobs", request, pb.FailJobsResponse)).results)


def duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


@dataclass
class Harness:
    app: Application
    workers: WorkerCalls
    jobs: JobsClient
    source_id: str
    tenant: str

    async def enqueue(self, job_type: str, n: int = 1, **fields: Any) -> list[job_pb2.Job]:
        made = []
        for _ in range(n):
            response = await self.jobs.enqueue_job(new_job(job_type, self.source_id, **fields))
            made.append(response.job)
        return made

    async def row(self, job_id: str) -> sa.Row[Any]:
        async with self.app.db.read() as conn:
            row = (await conn.execute(sa.select(_jobs).where(_jobs.c.job_id == job_id))).one()
        return row

    async def events(self, job_id: str) -> list[tuple[str, dict[str, Any], str | None]]:
        async with self.app.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(_events)
                    .where(_events.c.subject == f"jobs/{job_id}")
                    .order_by(_events.c.event_id)
                )
            ).all()
        return [(r.type, json.loads(r.data), r.tenant_id) for r in rows]


@pytest.fixture
async def harness(
    app: Application, grpc_target: str, tenant: str, access_token: str
) -> AsyncIterator[Harness]:
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, access_token=access_token, operator_reason="test run")
    try:
        source = await SourcesClient(transport, headers).register_source("feed", "manual")
        yield Harness(
            app=app,
            workers=WorkerCalls(transport, headers),
            jobs=JobsClient(transport, headers),
            source_id=source.source_id,
            tenant=tenant,
        )
    finally:
        await transport.close()


def aware(value: datetime | None) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones)."""
    assert value is not None
    return value.replace(tzinfo=value.tzinfo or UTC)


def reason(status: Any) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def test_lease_then_complete_stores_the_result_and_the_events(harness: Harness) -> None:
    (job,) = await harness.enqueue("scan.image", payload={"image": "a:1"}, priority=5)
    (lease,) = await harness.workers.lease(["scan.image"], lease=30)

    assert lease.job.job_id == job.job_id
    assert lease.job.status == "leased"
    assert lease.job.attempts == 1
    assert lease.job.payload.struct_value["image"] == "a:1"
    assert lease.token.job_id == job.job_id
    assert lease.token.attempt == 1
    assert len(lease.token.lease_id) == 32
    leased = await harness.row(job.job_id)
    assert leased.status == "leased"
    assert leased.lease_id == lease.token.lease_id
    assert leased.lease_owner == "w-1"
    assert leased.attempts == 1
    assert leased.next_eligible_at is None
    assert leased.quota_id is None
    assert aware(leased.lease_expires_at) == lease.expires_at.ToDatetime(tzinfo=UTC)
    assert aware(leased.lease_expires_at) - aware(leased.updated_at) == timedelta(seconds=30)

    (outcome,) = await harness.workers.complete((lease.token, {"ok": True}))
    assert outcome.status.code == code_pb2.OK
    assert outcome.job_status == "succeeded"
    assert outcome.token == lease.token
    done = await harness.row(job.job_id)
    assert done.status == "succeeded"
    assert json.loads(done.result) == {"ok": True}
    assert done.lease_expires_at is None
    assert done.finished_at == done.updated_at
    assert done.attempts == 1
    assert done.lease_id == lease.token.lease_id

    lease_id = lease.token.lease_id
    assert await harness.events(job.job_id) == [
        ("job.enqueued", (await harness.events(job.job_id))[0][1], harness.tenant),
        (
            "job.leased",
            {
                "from": "queued",
                "to": "leased",
                "attempt": 1,
                "leaseId": lease_id,
                "workerId": "w-1",
            },
            harness.tenant,
        ),
        (
            "job.succeeded",
            {
                "from": "leased",
                "to": "succeeded",
                "attempt": 1,
                "leaseId": lease_id,
                "workerId": "w-1",
            },
            harness.tenant,
        ),
    ]


async def test_lease_order_is_priority_then_age(harness: Harness) -> None:
    low = await harness.enqueue("order.check", 2, priority=1)
    high = await harness.enqueue("order.check", priority=9)
    leases = await harness.workers.lease(["order.check"], max_jobs=2)
    assert [lease.job.job_id for lease in leases] == [high[0].job_id, low[0].job_id]
    rest = await harness.workers.lease(["order.check"], max_jobs=5)
    assert [lease.job.job_id for lease in rest] == [low[1].job_id]


async def test_retryable_failure_backs_off_then_the_last_attempt_dead_letters(
    harness: Harness,
) -> None:
    backoff = job_pb2.Backoff(initial_delay=duration(0.5), max_delay=duration(10), jitter=0.0)
    (job,) = await harness.enqueue("fetch.page", max_attempts=2, backoff=backoff)
    (first,) = await harness.workers.lease(["fetch.page"])
    (outcome,) = await harness.workers.fail(
        pb.JobFailure(
            token=first.token,
            category="dependency",
            code="HTTP_503",
            message="upstream down",
            retryable=True,
        )
    )
    assert outcome.status.code == code_pb2.OK
    assert outcome.job_status == "failed"
    failed = await harness.row(job.job_id)
    assert failed.status == "failed"
    assert aware(failed.next_eligible_at) - aware(failed.updated_at) == timedelta(seconds=0.5)
    assert outcome.next_eligible_at.ToDatetime(tzinfo=UTC) == aware(failed.next_eligible_at)
    assert failed.lease_expires_at is None
    assert failed.finished_at is None
    assert json.loads(failed.last_error) == {
        "category": "dependency",
        "code": "HTTP_503",
        "message": "upstream down",
        "retryable": True,
        "attempt": 1,
        "failedAt": aware(failed.updated_at).isoformat().replace("+00:00", "Z"),
    }
    assert await harness.workers.lease(["fetch.page"]) == []  # backing off

    started = time.monotonic()
    (second,) = await harness.workers.lease(["fetch.page"], wait=5)
    waited = time.monotonic() - started
    assert waited < 2.0, f"the retry was leased {waited:.3f}s after its backoff began"
    assert second.token.attempt == 2
    (final,) = await harness.workers.fail(
        pb.JobFailure(token=second.token, category="dependency", code="HTTP_503", retryable=True)
    )
    assert final.job_status == "dead_lettered"
    assert not final.HasField("next_eligible_at")
    dead = await harness.row(job.job_id)
    assert dead.status == "dead_lettered"
    assert dead.next_eligible_at is None
    assert dead.finished_at == dead.updated_at
    assert json.loads(dead.last_error)["attempt"] == 2
    types = [event[0] for event in await harness.events(job.job_id)]
    assert types == ["job.enqueued", "job.leased", "job.failed", "job.leased", "job.dead_lettered"]
    failed_event = (await harness.events(job.job_id))[2][1]
    assert failed_event["from"] == "leased"
    assert failed_event["to"] == "failed"
    assert failed_event["nextEligibleAt"] == outcome.next_eligible_at.ToJsonString()


async def test_non_retryable_failure_dead_letters_at_once(harness: Harness) -> None:
    (job,) = await harness.enqueue("parse.doc", max_attempts=5)
    (lease,) = await harness.workers.lease(["parse.doc"])
    details = struct_pb2.Struct()
    details.update({"line": 3})
    (outcome,) = await harness.workers.fail(
        pb.JobFailure(
            token=lease.token,
            category="validation",
            code="BAD_INPUT",
            message="x" * 5000,
            retryable=False,
            details=details,
        )
    )
    assert outcome.job_status == "dead_lettered"
    row = await harness.row(job.job_id)
    assert row.status == "dead_lettered"
    assert row.attempts == 1
    error = json.loads(row.last_error)
    assert (error["category"], error["code"], error["retryable"]) == (
        "validation",
        "BAD_INPUT",
        False,
    )
    assert error["message"] == "x" * 4096
    event = (await harness.events(job.job_id))[-1]
    assert event[0] == "job.dead_lettered"
    assert event[1]["details"] == {"line": 3}


async def test_a_stale_and_the_current_token_of_one_job_in_one_call_are_told_apart(
    harness: Harness, clock: TestClock
) -> None:
    """A worker whose lease expired may lease the same job again and report both
    attempts in one batch (the SDK's outcome batching): the answers follow the tokens,
    not the job id, so the late attempt is refused and the current one succeeds,
    whichever comes first in the call."""
    (job,) = await harness.enqueue("render.twice", max_attempts=5)
    (old,) = await harness.workers.lease(["render.twice"], lease=1)
    clock.advance(2)
    assert harness.app._reaper is not None
    assert await harness.app._reaper.run_once() >= 1
    (new,) = await harness.workers.lease(["render.twice"])
    assert (new.job.job_id, old.token.attempt, new.token.attempt) == (job.job_id, 1, 2)

    late, current = await harness.workers.complete((old.token, {"late": True}), (new.token, None))
    assert (late.token, late.status.code, reason(late.status), late.job_status) == (
        old.token,
        code_pb2.FAILED_PRECONDITION,
        "STALE_LEASE",
        "",
    )
    assert (current.token, current.status.code, current.job_status) == (
        new.token,
        code_pb2.OK,
        "succeeded",
    )
    row = await harness.row(job.job_id)
    assert (row.status, row.lease_id, row.attempts, row.result) == (
        "succeeded",
        new.token.lease_id,
        2,
        None,
    )


async def test_stale_token_after_expiry_and_release_changes_nothing(
    harness: Harness, clock: TestClock
) -> None:
    (job,) = await harness.enqueue("render.pdf")
    (old,) = await harness.workers.lease(["render.pdf"], worker_id="w-old", lease=1)
    clock.advance(2)
    assert harness.app._reaper is not None
    assert await harness.app._reaper.run_once() >= 1
    requeued = await harness.row(job.job_id)
    assert requeued.status == "queued"
    assert requeued.attempts == 1
    assert json.loads(requeued.last_error)["code"] == "LEASE_EXPIRED"
    (new,) = await harness.workers.lease(["render.pdf"], worker_id="w-new")
    assert new.token.attempt == 2
    before = await harness.row(job.job_id)

    (done,) = await harness.workers.complete((old.token, {"late": True}))
    assert done.status.code == code_pb2.FAILED_PRECONDITION
    assert reason(done.status) == "STALE_LEASE"
    assert done.job_status == ""
    (failed,) = await harness.workers.fail(
        pb.JobFailure(token=old.token, category="timeout", code="SLOW", retryable=True)
    )
    assert failed.status.code == code_pb2.FAILED_PRECONDITION
    (beat,) = await harness.workers.heartbeat([old.token])
    assert beat.status.code == code_pb2.FAILED_PRECONDITION
    assert not beat.HasField("expires_at")
    assert await harness.row(job.job_id) == before

    (ok,) = await harness.workers.complete((new.token, None))
    assert ok.job_status == "succeeded"
    assert [event[0] for event in await harness.events(job.job_id)] == [
        "job.enqueued",
        "job.leased",
        "job.lease_expired",
        "job.leased",
        "job.succeeded",
    ]


async def test_batch_results_are_per_item_in_request_order(harness: Harness) -> None:
    await harness.enqueue("batch.item", 2)
    first, second = await harness.workers.lease(["batch.item"], max_jobs=2)
    bogus = pb.FencingToken(job_id="no-such-job", lease_id="x", attempt=1)
    outcomes = await harness.workers.complete(
        (first.token, None), (bogus, None), (second.token, {"n": 2}), (first.token, None)
    )
    assert [o.status.code for o in outcomes] == [
        code_pb2.OK,
        code_pb2.FAILED_PRECONDITION,
        code_pb2.OK,
        code_pb2.FAILED_PRECONDITION,
    ]
    assert [o.token for o in outcomes] == [first.token, bogus, second.token, first.token]
    assert [o.job_status for o in outcomes] == ["succeeded", "", "succeeded", ""]


async def test_heartbeat_extends_and_reports_cancellation(harness: Harness) -> None:
    await harness.enqueue("long.task", 2)
    keep, drop = await harness.workers.lease(["long.task"], max_jobs=2, lease=5)
    await harness.jobs.cancel_job(drop.job.job_id)
    kept, canceled = await harness.workers.heartbeat([keep.token, drop.token], lease=120)
    assert kept.status.code == code_pb2.OK
    assert kept.canceled is False
    row = await harness.row(keep.job.job_id)
    assert kept.expires_at.ToDatetime(tzinfo=UTC) == aware(row.lease_expires_at)
    assert kept.expires_at.ToDatetime() > keep.expires_at.ToDatetime() + timedelta(seconds=100)
    assert canceled.status.code == code_pb2.CANCELLED
    assert canceled.canceled is True
    assert reason(canceled.status) == "JOB_CANCELED"
    assert not canceled.HasField("expires_at")
    (late,) = await harness.workers.complete((drop.token, None))
    assert late.status.code == code_pb2.FAILED_PRECONDITION
    assert (await harness.row(drop.job.job_id)).status == "canceled"


async def test_two_workers_never_lease_the_same_job(harness: Harness) -> None:
    enqueued = {job.job_id for job in await harness.enqueue("share.me", 40)}

    async def drain(worker_id: str) -> list[str]:
        got: list[str] = []
        while True:
            leases = await harness.workers.lease(["share.me"], worker_id=worker_id, max_jobs=3)
            if not leases:
                return got
            got += [lease.job.job_id for lease in leases]

    a, b = await asyncio.gather(drain("w-a"), drain("w-b"))
    assert len(a) + len(b) == 40
    assert set(a).isdisjoint(b)
    assert set(a) | set(b) == enqueued


async def test_long_poll_wakes_when_work_arrives(harness: Harness) -> None:
    job_type = f"wake.{uuid.uuid4().hex[:6]}"
    waiting = asyncio.create_task(harness.workers.lease([job_type], wait=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    (job,) = await harness.enqueue(job_type)
    enqueued_at = time.monotonic()
    (lease,) = await waiting
    woke = time.monotonic() - enqueued_at
    assert lease.job.job_id == job.job_id
    assert woke < 0.5, f"the waiting lease answered {woke * 1000:.1f} ms after the enqueue"


async def test_long_poll_answers_empty_after_the_timeout(harness: Harness) -> None:
    started = time.monotonic()
    assert await harness.workers.lease(["idle.type"], wait=0.6) == []
    waited = time.monotonic() - started
    assert 0.6 <= waited < 1.6, f"waited {waited:.3f}s for a 0.6s timeout"


async def test_unknown_job_types_lease_nothing(harness: Harness) -> None:
    await harness.enqueue("known.type")
    assert await harness.workers.lease(["never.enqueued"]) == []
    assert (await harness.row((await harness.enqueue("known.type"))[0].job_id)).status == "queued"


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        ({"worker_id": " "}, {"workerId"}),
        ({"job_types": []}, {"jobTypes"}),
        ({"job_types": [f"t{i}" for i in range(101)]}, {"jobTypes"}),
        ({"max_jobs": 0}, {"maxJobs"}),
        ({"max_jobs": 1001}, {"maxJobs"}),
        ({"wait_timeout": duration(61)}, {"waitTimeout"}),
        ({"lease_duration": duration(0.5)}, {"leaseDuration"}),
        ({"worker_id": "", "max_jobs": -1}, {"workerId", "maxJobs"}),
        ({"job_types": ["a.b", "BAD"]}, {"jobTypes[1]"}),
        ({"job_types": ["NOT A SLUG", ""]}, {"jobTypes[0]", "jobTypes[1]"}),
        ({"wait_timeout": duration_pb2.Duration(seconds=1, nanos=-5)}, {"waitTimeout"}),
        ({"lease_duration": duration_pb2.Duration(seconds=2, nanos=10**9)}, {"leaseDuration"}),
    ],
)
async def test_malformed_lease_is_invalid_argument(
    harness: Harness, fields: dict[str, Any], violations: set[str]
) -> None:
    request = pb.LeaseJobsRequest(worker_id="w-1", job_types=["a.b"], max_jobs=1)
    for name, value in fields.items():
        if isinstance(value, duration_pb2.Duration):
            getattr(request, name).CopyFrom(value)
        elif isinstance(value, list):
            del getattr(request, name)[:]
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    with pytest.raises(ApiError) as err:
        await harness.workers.call("LeaseJobs", request, pb.LeaseJobsResponse)
    assert err.value.code == "INVALID_ARGUMENT"
    assert {field for field, _ in err.value.violations} == violations


@pytest.mark.parametrize(
    ("worker_id", "said"),
    [
        ("w" * 201, "must be at most 200 characters, got 201"),
        ("w\x00", "must not contain control characters, got 'w\\x00'"),
        ("w\x7f1", "must not contain control characters, got 'w\\x7f1'"),
    ],
)
async def test_a_bad_worker_id_is_said_as_what_is_wrong(
    harness: Harness, worker_id: str, said: str
) -> None:
    """A control character was "must be 1 to 200 printable characters, got 2"."""
    request = pb.LeaseJobsRequest(worker_id=worker_id, job_types=["a.b"], max_jobs=1)
    with pytest.raises(ApiError) as err:
        await harness.workers.call("LeaseJobs", request, pb.LeaseJobsResponse)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [("workerId", said)]


async def test_malformed_failure_fails_only_its_item(harness: Harness) -> None:
    await harness.enqueue("mixed.batch", 2)
    first, second = await harness.workers.lease(["mixed.batch"], max_jobs=2)
    bad, good = await harness.workers.fail(
        pb.JobFailure(token=first.token, category="Not A Slug", code="X", retryable=True),
        pb.JobFailure(token=second.token, category="timeout", code="SLOW", retryable=False),
    )
    assert bad.status.code == code_pb2.INVALID_ARGUMENT
    assert good.job_status == "dead_lettered"
    assert (await harness.row(first.job.job_id)).status == "leased"


async def test_oversized_batches_are_refused_whole(harness: Harness) -> None:
    tokens = [pb.FencingToken(job_id=f"j{i}", lease_id="l", attempt=1) for i in range(1001)]
    with pytest.raises(ApiError) as err:
        await harness.workers.heartbeat(tokens)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [("tokens", "must have at most 1000 items, got 1001")]


async def test_long_poll_wakes_on_another_server(
    database_url: str, clock: TestClock, harness: Harness, access_token: str
) -> None:
    """A worker waiting on a second server hears an enqueue made through the first: a
    NOTIFY on PostgreSQL; on SQLite (one process per file) the poll fallback finds it."""
    settings = settings_for(database_url).model_copy(
        update={"public_url": harness.app.settings.public_url}
    )
    other = Application(settings, clocks=clock.clocks())
    await other.start()
    transport = GrpcTransport(f"127.0.0.1:{other.grpc_port}")
    try:
        headers = CallerHeaders(tenant=harness.tenant, access_token=access_token)
        remote = WorkerCalls(transport, headers)
        job_type = f"far.{uuid.uuid4().hex[:6]}"
        waiting = asyncio.create_task(remote.lease([job_type], wait=10))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        (job,) = await harness.enqueue(job_type)
        enqueued_at = time.monotonic()
        (lease,) = await waiting
        woke = time.monotonic() - enqueued_at
        assert lease.job.job_id == job.job_id
        bound = 0.5 if "postgresql" in database_url else 1.5
        assert woke < bound, f"the other server's lease answered {woke * 1000:.1f} ms later"
    finally:
        await transport.close()
        await other.stop(grace=1)


async def test_oversized_result_fails_only_its_item(harness: Harness) -> None:
    await harness.enqueue("big.result", 2)
    first, second = await harness.workers.lease(["big.result"], max_jobs=2)
    huge, fine = await harness.workers.complete(
        (first.token, {"blob": "x" * (64 * 1024)}), (second.token, {"n": 1})
    )
    assert huge.status.code == code_pb2.INVALID_ARGUMENT
    violation = error_details_pb2.BadRequest()
    assert any(detail.Unpack(violation) for detail in huge.status.details)
    assert [v.field for v in violation.field_violations] == ["completions[0].result"]
    assert huge.job_status == ""
    assert fine.job_status == "succeeded"
    row = await harness.row(first.job.job_id)
    assert (row.status, row.result) == ("leased", None)


def _field_violations(status: Any) -> list[tuple[str, str]]:
    bad = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad) for detail in status.details)
    return [(v.field, v.description) for v in bad.field_violations]


_MISSING = "token is required: a jobId and leaseId from LeaseJobs"


@pytest.mark.parametrize(
    "blank",
    [{"job_id": ""}, {"lease_id": ""}],
    ids=["no-job-id", "no-lease-id"],
)
async def test_a_token_without_ids_is_invalid_only_for_its_item(
    harness: Harness, blank: dict[str, str]
) -> None:
    """INVALID_ARGUMENT naming `completions[i].token` (a malformed request), not the
    FAILED_PRECONDITION of a stale lease; the other items go through."""
    await harness.enqueue("token.check", 3)
    first, second, third = await harness.workers.lease(["token.check"], max_jobs=3)
    empty = pb.FencingToken()
    empty.CopyFrom(first.token)
    for name, value in blank.items():
        setattr(empty, name, value)

    missing, done = await harness.workers.complete((empty, None), (first.token, None))
    assert missing.status.code == code_pb2.INVALID_ARGUMENT
    assert reason(missing.status) == "TOKEN_REQUIRED"
    assert _field_violations(missing.status) == [("completions[0].token", _MISSING)]
    assert missing.token == empty
    assert done.job_status == "succeeded"

    empty.job_id, empty.lease_id = second.token.job_id, second.token.lease_id
    for name, value in blank.items():
        setattr(empty, name, value)
    kept, unknown = await harness.workers.heartbeat([second.token, empty])
    assert kept.status.code == code_pb2.OK
    assert unknown.status.code == code_pb2.INVALID_ARGUMENT
    assert _field_violations(unknown.status) == [("tokens[1]", _MISSING)]

    failed, missing = await harness.workers.fail(
        pb.JobFailure(token=third.token, category="timeout", code="SLOW", retryable=False),
        pb.JobFailure(token=empty, category="timeout", code="SLOW", retryable=False),
    )
    assert failed.job_status == "dead_lettered"
    assert missing.status.code == code_pb2.INVALID_ARGUMENT
    assert _field_violations(missing.status) == [("failures[1].token", _MISSING)]
    assert (await harness.row(second.job.job_id)).status == "leased"


async def test_a_malformed_heartbeat_duration_is_invalid_argument(harness: Harness) -> None:
    request = pb.HeartbeatRequest(
        worker_id="w-1", lease_duration=duration_pb2.Duration(seconds=-3, nanos=5)
    )
    with pytest.raises(ApiError) as err:
        await harness.workers.call("Heartbeat", request, pb.HeartbeatResponse)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [
        (
            "leaseDuration",
            "must be a valid Duration: nanos from -999999999 to 999999999 with the sign of "
            "seconds, got seconds=-3 nanos=5",
        )
    ]


_CONTROL = "token must be the jobId and leaseId LeaseJobs answered: got a control character"


async def test_a_token_with_a_nul_is_invalid_only_for_its_item(harness: Harness) -> None:
    """A NUL in a token's ids reached PostgreSQL in the lease lookup, which refuses it in
    text: INTERNAL for the whole call. Now INVALID_ARGUMENT for its item, in all three
    calls; the other items go through and the job it named stays leased."""
    await harness.enqueue("nul.token", 3)
    first, second, third = await harness.workers.lease(["nul.token"], max_jobs=3)
    broken = pb.FencingToken()
    broken.CopyFrom(first.token)
    broken.job_id = first.token.job_id[:8] + "\x00"

    refused, done = await harness.workers.complete((broken, None), (second.token, None))
    assert refused.status.code == code_pb2.INVALID_ARGUMENT
    assert _field_violations(refused.status) == [("completions[0].token", _CONTROL)]
    assert done.job_status == "succeeded"

    broken.CopyFrom(first.token)
    broken.lease_id = "\x00"
    kept, unknown = await harness.workers.heartbeat([third.token, broken])
    assert kept.status.code == code_pb2.OK
    assert _field_violations(unknown.status) == [("tokens[1]", _CONTROL)]
    (failed,) = await harness.workers.fail(
        pb.JobFailure(token=broken, category="timeout", code="SLOW", retryable=False)
    )
    assert _field_violations(failed.status) == [("failures[0].token", _CONTROL)]
    assert (await harness.row(first.job.job_id)).status == "leased"


async def test_a_failure_message_with_a_nul_is_stored_with_replacement_characters(
    harness: Harness,
) -> None:
    """An exception's text may hold a NUL; PostgreSQL refuses it in text, so a final
    failure (its message goes to the dead-letter entry) was INTERNAL and rolled back the
    whole batch, leaving every job leased. Now each control character but a tab or line
    break is stored as U+FFFD, and both failures of the batch land."""
    await harness.enqueue("nul.message", 2)
    first, second = await harness.workers.lease(["nul.message"], max_jobs=2)
    outcomes = await harness.workers.fail(
        pb.JobFailure(
            token=first.token,
            category="crash",
            code="SEGV",
            message="read\x00failed\tat\nline 3\x1b[0m",
            retryable=False,
        ),
        pb.JobFailure(token=second.token, category="crash", code="SEGV", retryable=False),
    )
    assert [o.job_status for o in outcomes] == ["dead_lettered", "dead_lettered"]
    stored = "read\ufffdfailed\tat\nline 3\ufffd[0m"
    by_job = {o.token.job_id: o for o in outcomes}
    assert set(by_job) == {first.job.job_id, second.job.job_id}
    row = await harness.row(first.job.job_id)
    assert (row.status, json.loads(row.last_error)["message"]) == ("dead_lettered", stored)
    entries = table_of(DeadLetterEntryRow)
    async with harness.app.db.read() as conn:
        messages = dict(
            (
                await conn.execute(
                    sa.select(entries.c.job_id, entries.c.message).where(
                        entries.c.job_id.in_([first.job.job_id, second.job.job_id])
                    )
                )
            ).all()
        )
    assert messages == {first.job.job_id: stored, second.job.job_id: ""}


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


async def test_a_result_or_details_that_is_no_json_is_invalid_only_for_its_item(
    harness: Harness,
) -> None:
    """A NaN in a result or in failure details (a double may hold one over gRPC; JSON
    cannot) made json_format raise: INTERNAL, and the whole batch was lost, the valid
    item's job left leased. Too deep a result would not fit a reader's decoder. Now
    each is INVALID_ARGUMENT for its item, naming it; the other items go through."""
    await harness.enqueue("nan.result", 4)
    first, second, third, fourth = await harness.workers.lease(["nan.result"], max_jobs=4)
    refused, done, deep = await harness.workers.complete(
        (first.token, {"score": math.nan}),
        (second.token, {"score": 1.5}),
        (third.token, {"levels": _nested(30)}),  # 31 levels with the object around it
    )
    assert refused.status.code == code_pb2.INVALID_ARGUMENT
    assert _field_violations(refused.status) == [
        ("completions[0].result", "must be JSON: NaN and infinities are not")
    ]
    assert done.job_status == "succeeded"
    assert _field_violations(deep.status) == [
        (
            "completions[2].result",
            "nested too deeply: at most 30 levels of arrays and objects",
        )
    ]
    details = struct_pb2.Struct()
    details.update({"ratio": math.inf})
    failed, kept = await harness.workers.fail(
        pb.JobFailure(
            token=first.token, category="crash", code="X", retryable=False, details=details
        ),
        pb.JobFailure(token=fourth.token, category="crash", code="X", retryable=False),
    )
    assert _field_violations(failed.status) == [
        ("failures[0].details", "must be JSON: NaN and infinities are not")
    ]
    assert kept.job_status == "dead_lettered"
    statuses = [(await harness.row(j.job.job_id)).status for j in (first, second, third)]
    assert statuses == ["leased", "succeeded", "leased"]


async def test_a_result_or_details_over_the_cap_is_invalid_only_for_its_item(
    harness: Harness,
) -> None:
    """Results were capped at RESULT_MAX_BYTES as JSON; a failure's details were not,
    and 200 KB of them went into the job.failed event and every GET of the job. Both
    are refused for their item now, naming it; the job stays leased."""
    cap = RESULT_MAX_BYTES
    await harness.enqueue("capped", 3)
    first, second, third = await harness.workers.lease(["capped"], max_jobs=3)
    big = {"blob": "x" * cap}  # cap + 11 bytes as JSON
    [too_big] = await harness.workers.complete((first.token, big))
    assert _field_violations(too_big.status) == [
        ("completions[0].result", f"must be at most {cap} bytes as JSON, got {cap + 11}")
    ]
    details = struct_pb2.Struct()
    details.update(big)
    failed, kept = await harness.workers.fail(
        pb.JobFailure(
            token=second.token, category="crash", code="X", retryable=False, details=details
        ),
        pb.JobFailure(token=third.token, category="crash", code="X", retryable=False),
    )
    assert failed.status.code == code_pb2.INVALID_ARGUMENT
    assert _field_violations(failed.status) == [
        ("failures[0].details", f"must be at most {cap} bytes as JSON, got {cap + 11}")
    ]
    assert kept.job_status == "dead_lettered"
    statuses = [(await harness.row(j.job.job_id)).status for j in (first, second)]
    assert statuses == ["leased", "leased"]
    just_fits = {"blob": "x" * (cap - 11)}
    [done] = await harness.workers.complete((first.token, just_fits))
    assert done.job_status == "succeeded"


async def test_a_payload_nested_deeper_than_30_levels_is_refused_over_grpc(
    harness: Harness,
) -> None:
    """REST refused free JSON deeper than 30 levels; gRPC took a 49-level payload, and
    the LeaseJobs answer carrying it was past the decoder's limit: the worker got
    INTERNAL while the job stood leased to it. Now the enqueue is refused."""
    with pytest.raises(ApiError) as err:
        await harness.enqueue("deep.payload", payload=_nested(31))
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [
        ("job.payload", "nested too deeply: at most 30 levels of arrays and objects")
    ]
    (job,) = await harness.enqueue("deep.payload", payload=_nested(30))
    (lease,) = await harness.workers.lease(["deep.payload"])
    assert lease.job.job_id == job.job_id
