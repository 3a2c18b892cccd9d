"""Job-ending hints (`server/domain/job_endings.py`) on SQLite and PostgreSQL, through
the real server: an owned job (packRunId or `jobs.owner` set) that succeeds, is
dead-lettered (a final failure, an expired last lease) or is canceled is announced
once, after its commit, with its ownership columns; ordinary jobs, retried failures
and a failing listener change nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from clients.base import CallerHeaders
from clients.jobs import JobsClient
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as pb
from server.app import Application
from server.domain.job_endings import JobEnding, JobEndings
from server.storage.tables import JobRow, table_of
from tests.integration.test_workers import Harness, WorkerCalls, aware

_jobs = table_of(JobRow)


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


@pytest.fixture
def heard(app: Application, tenant: str) -> Iterator[list[JobEnding]]:
    """What this test's tenant's endings the server's hub announced, in order."""
    endings: list[JobEnding] = []

    def listener(batch: Sequence[JobEnding]) -> None:
        endings.extend(e for e in batch if e.tenant_id == tenant)

    unsubscribe = app.store.endings.subscribe(listener)
    try:
        yield endings
    finally:
        unsubscribe()


def _type() -> str:
    return f"endings.{uuid.uuid4().hex[:8]}"


async def _set_owner(app: Application, job_id: str, owner: str) -> None:
    async with app.db.engine.begin() as conn:
        await conn.execute(sa.update(_jobs).where(_jobs.c.job_id == job_id).values(owner=owner))


async def test_completed_owned_jobs_are_announced_ordinary_ones_are_not(
    harness: Harness, heard: list[JobEnding]
) -> None:
    job_type = _type()
    (packed,) = await harness.enqueue(job_type, pack_run_id="run-1")
    (plain,) = await harness.enqueue(job_type)
    (engine,) = await harness.enqueue(job_type)
    await _set_owner(harness.app, engine.job_id, "orchestra-tokens/tok-1")

    leases = await harness.workers.lease([job_type], max_jobs=3)
    assert len(leases) == 3
    outcomes = await harness.workers.complete(*((lease.token, None) for lease in leases))
    assert [o.job_status for o in outcomes] == ["succeeded"] * 3

    assert sorted(heard, key=lambda e: e.job_id) == sorted(
        [
            JobEnding(harness.tenant, packed.job_id, "succeeded", "run-1", None),
            JobEnding(harness.tenant, engine.job_id, "succeeded", None, "orchestra-tokens/tok-1"),
        ],
        key=lambda e: e.job_id,
    )
    assert plain.job_id not in {e.job_id for e in heard}
    # Announced after the commit: the job is already succeeded for any reader.
    assert (await harness.row(packed.job_id)).status == "succeeded"


async def test_final_failure_is_announced_a_retried_one_is_not(
    harness: Harness, heard: list[JobEnding]
) -> None:
    job_type = _type()
    (job,) = await harness.enqueue(job_type, pack_run_id="run-2", max_attempts=2)

    (first,) = await harness.workers.lease([job_type])
    (retried,) = await harness.workers.fail(
        pb.JobFailure(token=first.token, category="dependency", code="HTTP_503", retryable=True)
    )
    assert retried.job_status == "failed"
    assert heard == []

    await _make_eligible(harness.app, job.job_id)
    (second,) = await harness.workers.lease([job_type])
    (final,) = await harness.workers.fail(
        pb.JobFailure(token=second.token, category="dependency", code="HTTP_503", retryable=True)
    )
    assert final.job_status == "dead_lettered"
    assert heard == [JobEnding(harness.tenant, job.job_id, "dead_lettered", "run-2", None)]


async def test_non_retryable_failure_and_cancel_are_announced(
    harness: Harness, heard: list[JobEnding]
) -> None:
    job_type = _type()
    (failing,) = await harness.enqueue(job_type, pack_run_id="run-3")
    (queued,) = await harness.enqueue(job_type + ".other", pack_run_id="run-3")
    (plain,) = await harness.enqueue(job_type + ".other")

    (lease,) = await harness.workers.lease([job_type])
    await harness.workers.fail(
        pb.JobFailure(token=lease.token, category="validation", code="BAD", retryable=False)
    )
    canceled = await harness.jobs.cancel_job(queued.job_id)
    assert canceled.status == "canceled"
    await harness.jobs.cancel_job(plain.job_id)

    assert heard == [
        JobEnding(harness.tenant, failing.job_id, "dead_lettered", "run-3", None),
        JobEnding(harness.tenant, queued.job_id, "canceled", "run-3", None),
    ]


async def test_expired_last_lease_is_announced(harness: Harness, heard: list[JobEnding]) -> None:
    job_type = _type()
    (job,) = await harness.enqueue(job_type, pack_run_id="run-4", max_attempts=1)
    (lease,) = await harness.workers.lease([job_type], lease=1)
    leases = harness.app.store.leases
    expiry = (await harness.row(job.job_id)).lease_expires_at
    expired = await leases.expire(aware(expiry) + timedelta(seconds=1), 1000)
    assert expired >= 1
    assert (await harness.row(job.job_id)).status == "dead_lettered"
    assert heard == [JobEnding(harness.tenant, job.job_id, "dead_lettered", "run-4", None)]
    assert lease.job.job_id == job.job_id


async def test_a_failing_listener_changes_nothing(harness: Harness, heard: list[JobEnding]) -> None:
    def broken(batch: Sequence[JobEnding]) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = harness.app.store.endings.subscribe(broken)
    try:
        job_type = _type()
        (job,) = await harness.enqueue(job_type, pack_run_id="run-5")
        (lease,) = await harness.workers.lease([job_type])
        (outcome,) = await harness.workers.complete((lease.token, None))
    finally:
        unsubscribe()
    assert outcome.job_status == "succeeded"
    assert heard == [JobEnding(harness.tenant, job.job_id, "succeeded", "run-5", None)]


def test_hub_publishes_to_subscribers_until_they_unsubscribe() -> None:
    hub = JobEndings()
    assert not hub.listening
    got: list[Sequence[JobEnding]] = []
    unsubscribe = hub.subscribe(got.append)
    assert hub.listening
    ending = JobEnding("t", "j", "succeeded", "p", None)
    hub.publish([])
    hub.publish([ending])
    unsubscribe()
    unsubscribe()  # twice is harmless
    hub.publish([ending])
    assert got == [[ending]]
    assert not hub.listening


async def _make_eligible(app: Application, job_id: str) -> None:
    """Skip the retry's backoff: eligible since long ago."""
    async with app.db.engine.begin() as conn:
        await conn.execute(
            sa.update(_jobs)
            .where(_jobs.c.job_id == job_id)
            .values(next_eligible_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
