"""Leasing under quotas and the lease reaper (issue 9 points 1 and 4), over gRPC on
loopback, on SQLite and PostgreSQL: the concurrency cap, pause and resume, the token
bucket and the last hour's count; expired leases returned by the reaper; the active
count back at zero after workers vanish."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from clients.base import CallerHeaders
from clients.jobs import JobsClient, new_job
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as pb
from server.app import Application
from server.storage.tables import QuotaRow, table_of
from server.storage.wakeups import CHANNEL, Wakeups
from tests.conftest import settings_for
from tests.integration.test_workers import Harness, WorkerCalls, aware
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock
from tests.support.quotas import QuotasClient

_quotas = table_of(QuotaRow)


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
async def quotas(
    grpc_target: str, tenant: str, tokens: TokenFactory
) -> AsyncIterator[QuotasClient]:
    token = await tokens.token(tenant, ("orch:quota",), quota_reason="leasing tests")
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, operator_reason="test run", access_token=token)
    try:
        yield QuotasClient(transport, headers)
    finally:
        await transport.close()


async def quota_row(app: Application, quota_id: str) -> sa.Row[object]:
    async with app.db.read() as conn:
        return (await conn.execute(sa.select(_quotas).where(_quotas.c.quota_id == quota_id))).one()


async def test_max_active_leases_up_to_the_cap_and_throttles_the_rest(
    harness: Harness, quotas: QuotasClient
) -> None:
    quota = await quotas.create_quota("capped.work", max_active=2, burst=1)
    jobs = await harness.enqueue("capped.work", 5)

    leases = await harness.workers.lease(["capped.work"], max_jobs=5)
    assert [lease.job.job_id for lease in leases] == [job.job_id for job in jobs[:2]]
    assert (await quota_row(harness.app, quota.quota_id)).active == 2
    throttled = [await harness.row(job.job_id) for job in jobs[2:]]
    assert [row.status for row in throttled] == ["throttled"] * 3
    # The busy delay, staggered by a microsecond per place so they keep their order.
    assert [aware(row.next_eligible_at) - aware(row.updated_at) for row in throttled] == [
        timedelta(seconds=5, microseconds=place) for place in (3, 4, 5)
    ]
    for row in throttled:
        assert row.attempts == 0
        assert row.quota_id is None
    for lease in leases:
        assert (await harness.row(lease.job.job_id)).quota_id == quota.quota_id
    event = (await harness.events(jobs[2].job_id))[-1]
    assert event[0] == "job.throttled"
    assert event[1] == {
        "from": "queued",
        "to": "throttled",
        "nextEligibleAt": aware(throttled[0].next_eligible_at).isoformat().replace("+00:00", "Z"),
    }
    assert await harness.workers.lease(["capped.work"], max_jobs=5) == []

    (done,) = await harness.workers.complete((leases[0].token, None))
    assert done.job_status == "succeeded"
    assert (await quota_row(harness.app, quota.quota_id)).active == 1
    assert (await harness.row(leases[0].job.job_id)).quota_id is None

    (freed,) = await harness.workers.lease(["capped.work"], max_jobs=5)
    assert freed.job.job_id == jobs[2].job_id
    assert freed.token.attempt == 1
    assert (await quota_row(harness.app, quota.quota_id)).active == 2
    summary = await quotas.get_quota(quota.quota_id)
    assert summary.usage.active == 2
    assert summary.usage.last_hour == 3


async def test_paused_quota_leases_nothing_until_resumed(
    harness: Harness, quotas: QuotasClient
) -> None:
    quota = await quotas.create_quota("pausable.work", burst=1)
    await quotas.pause_quota(quota.quota_id, "maintenance")
    (job,) = await harness.enqueue("pausable.work")
    other = await harness.enqueue("free.work")

    leases = await harness.workers.lease(["pausable.work", "free.work"], max_jobs=5)
    assert [lease.job.job_id for lease in leases] == [other[0].job_id]
    row = await harness.row(job.job_id)
    assert (row.status, row.attempts) == ("queued", 0)

    await quotas.resume_quota(quota.quota_id)
    (lease,) = await harness.workers.lease(["pausable.work"], max_jobs=5)
    assert lease.job.job_id == job.job_id
    assert (await quota_row(harness.app, quota.quota_id)).active == 1


async def test_token_bucket_spaces_leases_by_the_refill_rate(
    harness: Harness, quotas: QuotasClient
) -> None:
    quota = await quotas.create_quota("metered.work", burst=2, refill_per_second=2.0)
    jobs = await harness.enqueue("metered.work", 4)

    leases = await harness.workers.lease(["metered.work"], max_jobs=4)
    assert [lease.job.job_id for lease in leases] == [job.job_id for job in jobs[:2]]
    stored = await quota_row(harness.app, quota.quota_id)
    waiting = [await harness.row(job.job_id) for job in jobs[2:]]
    assert [row.status for row in waiting] == ["throttled", "throttled"]
    # A full bucket of 2 spent: the next token in 1 / 2 s (staggered per place).
    assert stored.tokens == 0.0
    assert [aware(row.next_eligible_at) - aware(row.updated_at) for row in waiting] == [
        timedelta(seconds=0.5, microseconds=place) for place in (3, 4)
    ]

    started = time.monotonic()
    got = [lease.job.job_id for lease in await harness.workers.lease(["metered.work"], wait=5)]
    while len(got) < 2:
        got += [lease.job.job_id for lease in await harness.workers.lease(["metered.work"], wait=5)]
    took = time.monotonic() - started
    assert sorted(got) == sorted(job.job_id for job in jobs[2:])
    # Two more tokens at 2 per second: about a second, never at once.
    assert 0.4 <= took < 3.0, f"the throttled jobs took {took:.3f}s"


async def test_max_per_hour_holds_jobs_until_the_window_moves(
    harness: Harness, quotas: QuotasClient
) -> None:
    await quotas.create_quota("hourly.work", max_per_hour=2, burst=1)
    jobs = await harness.enqueue("hourly.work", 3)
    leases = await harness.workers.lease(["hourly.work"], max_jobs=3)
    assert len(leases) == 2
    held = await harness.row(jobs[2].job_id)
    assert held.status == "throttled"
    # Eligible again when the first counted minute leaves the sliding hour.
    until = aware(held.next_eligible_at)
    assert (until.second, until.microsecond) == (0, 3)  # a minute's start, third place
    assert timedelta(minutes=59) <= until - aware(held.updated_at) <= timedelta(minutes=60)


async def test_active_count_returns_to_zero_after_workers_vanish(
    harness: Harness, quotas: QuotasClient, clock: TestClock
) -> None:
    quota = await quotas.create_quota("fragile.work", max_active=3, burst=1)
    jobs = await harness.enqueue("fragile.work", 4, max_attempts=1)
    leases = await harness.workers.lease(["fragile.work"], max_jobs=4, lease=1)
    assert len(leases) == 3
    assert (await quota_row(harness.app, quota.quota_id)).active == 3
    clock.advance(2)  # the workers never heartbeat again
    assert harness.app._reaper is not None
    assert await harness.app._reaper.run_once() >= 3
    assert (await quota_row(harness.app, quota.quota_id)).active == 0
    for lease in leases:
        row = await harness.row(lease.job.job_id)
        assert (row.status, row.attempts, row.quota_id) == ("dead_lettered", 1, None)
        assert json.loads(row.last_error)["code"] == "LEASE_EXPIRED"
        assert [event[0] for event in await harness.events(lease.job.job_id)][-1] == (
            "job.lease_expired"
        )
    # The job the cap held back is leased at once: the expiries freed its slot.
    (next_lease,) = await harness.workers.lease(["fragile.work"], max_jobs=4)
    assert next_lease.job.job_id == jobs[3].job_id


async def test_reaper_returns_an_expired_job_within_its_interval(
    database_url: str, clock: TestClock, harness: Harness
) -> None:
    """A second server on the same database with a short reaper interval: the expired
    lease is back in the queue, its attempt counted, without anyone asking."""
    settings = settings_for(database_url).model_copy(update={"lease_reaper_interval_seconds": 0.2})
    reaping = Application(settings, clocks=clock.clocks())
    await reaping.start()
    try:
        (job,) = await harness.enqueue("reaped.work", max_attempts=3)
        (lease,) = await harness.workers.lease(["reaped.work"], lease=1)
        expired_at = lease.expires_at.ToDatetime(tzinfo=UTC)
        started = time.monotonic()
        while (row := await harness.row(job.job_id)).status == "leased":
            assert time.monotonic() - started < 15, "the expired lease was not reaped in 15 s"
            await asyncio.sleep(0.05)
        assert (row.status, row.attempts) == ("queued", 1)
        assert aware(row.updated_at) >= expired_at
        reaped_after = (aware(row.updated_at) - expired_at).total_seconds()
        assert reaped_after < 15, f"reaped {reaped_after:.3f}s after expiry"
        (again,) = await harness.workers.lease(["reaped.work"])
        assert again.token.attempt == 2
    finally:
        await reaping.stop(grace=1)


async def test_wakeups_cross_processes_and_survive_a_dropped_listener(database_url: str) -> None:
    """Two hubs on one database, as two servers have: on PostgreSQL a notify through one
    wakes as many waiters of the other as it counts jobs, also after the listener's
    connection was killed (it reconnects); on SQLite (one process per file) they do not
    hear each other."""
    listener, sender = Wakeups(database_url), Wakeups(database_url)
    await listener.start()
    await sender.start()
    try:
        watch = listener.watch("t-1", ["x.y"])
        sender.notify("t-1", "x.y")
        heard = await watch.wait(2)
        watch.close()
        if "sqlite" in database_url:
            assert heard is False
            return
        assert heard is True
        # The count travels: two jobs wake two of three waiters over there, oldest first.
        watches = [listener.watch("t-1", ["x.y"]) for _ in range(3)]
        sender.notify("t-1", "x.y", 2)
        assert await watches[1].wait(2) is True
        await asyncio.sleep(0.2)
        assert [w.event.is_set() for w in watches] == [True, True, False]
        watches[0].pass_on()  # a full lease hands its wake-up on: the third
        assert [w.event.is_set() for w in watches] == [True, True, True]
        for w in watches:
            w.close()
        # On the wire: the previous release splits "{sender}\t{tenant}\t{job type}", so
        # the count rides in the first field and a replica not yet upgraded still
        # reads tenant and job type during a rolling upgrade.
        heard_raw: asyncio.Queue[str] = asyncio.Queue()
        raw = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            await raw.add_listener(CHANNEL, lambda *args: heard_raw.put_nowait(args[-1]))
            sender.notify("t-1", "x.y", 3)
            first, tenant_id, job_type = (await asyncio.wait_for(heard_raw.get(), 2)).split("\t")
        finally:
            await raw.close()
        assert (first.split(":")[1], tenant_id, job_type) == ("3", "t-1", "x.y")
        old_pid = listener.server_pid()
        assert old_pid is not None
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": old_pid})
        finally:
            await engine.dispose()
        started = time.monotonic()
        while listener.server_pid() in (None, old_pid):
            assert time.monotonic() - started < 10, "the listener did not reconnect in 10 s"
            await asyncio.sleep(0.05)
        watch = listener.watch("t-1", ["x.y"])
        sender.notify("t-1", "x.y")
        assert await watch.wait(2) is True
        watch.close()
    finally:
        await listener.close()
        await sender.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_idle_waiters_here_come_first_and_only_the_rest_is_announced(
    database_url: str,
) -> None:
    """Two hubs as two replicas: jobs that idle waiters of the notifying replica take
    are not announced to the other (no NOTIFY round trip on the hot path); the jobs
    beyond them are, counted; and a wake-up that a waiter here will not act on goes to
    the other replica when no waiter here is idle."""
    here, there = Wakeups(database_url), Wakeups(database_url)
    await here.start()
    await there.start()
    heard: asyncio.Queue[str] = asyncio.Queue()
    raw = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    await raw.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    try:
        local = here.watch("t-1", ["x.y"])
        remote = [there.watch("t-1", ["x.y"]) for _ in range(2)]
        here.notify("t-1", "x.y")  # one job, one idle waiter here: it takes it
        assert await local.wait(2) is True
        await asyncio.sleep(0.3)
        assert heard.empty()
        assert [w.woken for w in remote] == [False, False]
        here.notify("t-1", "x.y", 2)  # the waiter here is busy: both go over there
        assert await remote[1].wait(2) is True
        first, tenant_id, job_type = (await asyncio.wait_for(heard.get(), 2)).split("\t")
        assert (first.split(":")[1], tenant_id, job_type) == ("2", "t-1", "x.y")
        assert [w.woken for w in remote] == [True, True]
        for w in remote:
            w.close()
        late = there.watch("t-1", ["x.y"])
        local.pass_on()  # a lease that left work behind: the others heard of it already
        await asyncio.sleep(0.3)
        assert (heard.empty(), late.woken) == (True, False)
        local.pass_on(across_replicas=True)  # woken, will not query, nobody idle here
        assert await late.wait(2) is True
        first, _, _ = (await asyncio.wait_for(heard.get(), 2)).split("\t")
        assert first.split(":")[1] == "1"
        late.close()
        local.close()
    finally:
        await raw.close()
        await here.close()
        await there.close()


async def test_one_job_wakes_one_long_poll_and_a_batch_wakes_as_many(harness: Harness) -> None:
    """No thundering herd: with three workers long-polling, an enqueued job wakes one of
    them, the one waiting longest, so one lease query runs, not three, and the others
    keep waiting; a batch of two jobs then wakes both of them."""
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "priority DESC" in statement:  # a lease query (PostgreSQL and SQLite)
            statements.append(statement)

    def long_poll(worker_id: str) -> asyncio.Task[list[pb.Lease]]:
        return asyncio.create_task(
            harness.workers.lease(["herd.work"], worker_id=worker_id, max_jobs=1, wait=10)
        )

    first = long_poll("w-1")
    await asyncio.sleep(0.2)
    waiting = [first, long_poll("w-2"), long_poll("w-3")]
    engine = harness.app.db.engine.sync_engine
    try:
        await asyncio.sleep(0.5)  # all three in their long poll
        sa.event.listen(engine, "before_cursor_execute", seen)
        (job,) = await harness.enqueue("herd.work")
        await asyncio.wait([first], timeout=5)
        await asyncio.sleep(0.3)  # time for any other woken poll to run its query
        sa.event.remove(engine, "before_cursor_execute", seen)
        assert [task.done() for task in waiting] == [True, False, False]
        assert [lease.job.job_id for lease in first.result()] == [job.job_id]
        assert len(statements) == 1, f"{len(statements)} lease queries ran for one job"

        batch = [new_job("herd.work", harness.source_id) for _ in range(2)]
        response = await harness.jobs.batch_enqueue_jobs(batch)
        created = sorted(result.job.job_id for result in response.results)
        done, _ = await asyncio.wait(waiting[1:], timeout=5)
        assert len(done) == 2
        got = sorted(lease.job.job_id for task in waiting[1:] for lease in task.result())
        assert got == created
    finally:
        for task in waiting:
            task.cancel()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_call_that_will_not_wait_passes_on_a_wake_up_it_got(
    harness: Harness, quotas: QuotasClient, database_url: str
) -> None:
    """A wake-up chooses one waiter; one that chose a LeaseJobs call which then returns
    without looking again (waitTimeout 0, its query already under way) is handed on, so
    the worker that is long-polling leases at once, not at its 1 s poll fallback.
    PostgreSQL: a quota row locked from outside holds the short call inside its query
    while the job arrives (SQLite leases one at a time in-process: no such window)."""
    quota = await quotas.create_quota("slow.leg", max_active=5)
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.execute(
                sa.select(_quotas.c.quota_id)
                .where(_quotas.c.quota_id == quota.quota_id)
                .with_for_update()
            )
            long_poll = asyncio.create_task(
                harness.workers.lease(["fast.leg"], worker_id="long", max_jobs=1, wait=8)
            )
            await asyncio.sleep(0.2)
            short = asyncio.create_task(
                harness.workers.lease(["fast.leg", "slow.leg"], worker_id="short", wait=0)
            )
            await asyncio.sleep(1.1)  # the long poll polled again: the short call waits longer
            enqueued_at = time.monotonic()
            (job,) = await harness.enqueue("fast.leg")
            await asyncio.sleep(0.05)
        assert await short == []  # its query began before the job existed
        (lease,) = await long_poll
        took = time.monotonic() - enqueued_at
    finally:
        await engine.dispose()
    assert lease.job.job_id == job.job_id
    assert took < 0.5, f"the long poll leased {took:.3f}s after the enqueue"
