"""Pack runs driven by real workers (issue 10 point 4), on SQLite and PostgreSQL:

- two worker processes (`tests.support.worker_process`, the worker SDK over gRPC)
  run a pack with dependencies; every job runs once, and no job is enqueued (let
  alone leased) before every job it depends on has succeeded, judged from the event
  log's times and the workers' own lease records;
- a worker (the SDK, in this process, over gRPC) holds a job when its run is
  canceled: its handler is cancelled at its next heartbeat and reports nothing, the
  pending job never runs;
- a run whose job fails for good (the handler raises a non-retryable JobFailed) fails
  with its dependent skipped; its retry runs the two again and succeeds;
- two stores (as two replicas) advancing one run at once start each waiting job once.

The server is the session's (in this process); the engine advances the runs on its
own (job-ending hints, then its loop).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from clients.worker import JobFailed, LeasedJob, Worker
from orchestrator.jobengine.v1 import pack_run_pb2
from server.app import Application
from server.domain.pack_runs import PackRunEngine, advance
from server.storage.db import Database
from server.storage.store import SqlStore
from server.storage.tables import EventRow, JobRow, table_of
from tests.integration.test_pack_runs import PackRuns, job
from tests.support.auth import TokenFactory
from tests.support.fleet import WorkerProcess

_jobs = table_of(JobRow)
_events = table_of(EventRow)


class Bench:
    """What every test here uses: a source, a job type, clients and credentials."""

    def __init__(
        self,
        app: Application,
        tenant: str,
        source_id: str,
        packs: PackRuns,
        backfill: PackRuns,
        credentials: ClientCredentials,
        grpc_target: str,
    ) -> None:
        self.app = app
        self.tenant = tenant
        self.source_id = source_id
        self.job_type = f"packw.{uuid.uuid4().hex[:8]}"
        self.packs = packs
        self.backfill = backfill
        self.credentials = credentials
        self.grpc_target = grpc_target

    async def until(
        self, pack_run_id: str, done: Callable[[pack_run_pb2.PackRun], bool], timeout: float = 60
    ) -> pack_run_pb2.PackRun:
        deadline = time.monotonic() + timeout
        while True:
            run = await self.packs.get(pack_run_id)
            if done(run):
                return run
            if time.monotonic() > deadline:
                jobs = {j.name: (j.status, j.job_status) for j in run.jobs}
                raise AssertionError(f"run {run.status}: {jobs}")
            await asyncio.sleep(0.05)

    def worker(self, handler: Callable[[LeasedJob], Awaitable[object]]) -> Worker:
        return Worker.connect(
            self.grpc_target,
            job_types=[self.job_type],
            handler=handler,
            credentials=self.credentials,
            concurrency=4,
            lease_duration=1.5,  # heartbeats every 0.5 s
            wait_timeout=1.0,
            grace_period=2.0,
        )

    async def events(self, job_ids: list[str]) -> dict[str, list[tuple[str, datetime]]]:
        """Each job's events (type, time), oldest first."""
        subjects = [f"jobs/{job_id}" for job_id in job_ids]
        async with self.app.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(_events)
                    .where(_events.c.subject.in_(subjects))
                    .order_by(_events.c.event_id)
                )
            ).all()
        found: dict[str, list[tuple[str, datetime]]] = {job_id: [] for job_id in job_ids}
        for row in rows:
            found[row.subject.removeprefix("jobs/")].append((row.type, row.time))
        return found


@pytest.fixture
async def bench(
    app: Application, grpc_target: str, http_base: str, tenant: str, tokens: TokenFactory
) -> AsyncIterator[Bench]:
    created = await tokens.client(tenant, ("orch:read", "orch:operate"))
    credentials = ClientCredentials(
        f"{http_base}/oauth/token",
        created.client.client_id,
        created.client_secret,
        scopes=["orch:operate"],
    )
    token = await tokens.token(tenant)
    backfill_token = await tokens.token(
        tenant, ("orch:read", "orch:backfill"), backfill_reason="rerun the failed jobs"
    )
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, access_token=token, operator_reason="workers test")
    try:
        source = await SourcesClient(transport, headers).register_source("pack-workers", "manual")
        yield Bench(
            app,
            tenant,
            source.source_id,
            PackRuns(transport, headers),
            PackRuns(
                transport,
                CallerHeaders(
                    tenant=tenant, access_token=backfill_token, operator_reason="workers test"
                ),
            ),
            credentials,
            grpc_target,
        )
    finally:
        await transport.close()


async def test_worker_processes_run_a_pack_in_dependency_order(
    bench: Bench, tmp_path: Path
) -> None:
    t, s = bench.job_type, bench.source_id
    graph = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": (), "f": ("d", "e")}
    workers = [
        await WorkerProcess.start(
            tmp_path,
            f"pack-worker-{i}",
            target=bench.grpc_target,
            credentials=bench.credentials,
            job_types=[t],
            concurrency=4,
            work_seconds=0.05,
        )
        for i in range(2)
    ]
    try:
        run = await bench.packs.create(
            "diamond",
            [
                job(name, t, s, *deps, payload={"n": i})
                for i, (name, deps) in enumerate(graph.items())
            ],
        )
        try:
            run = await bench.until(run.pack_run_id, lambda r: r.status != "running")
        except AssertionError as stuck:  # say what the workers saw
            logs = "\n".join(f"--- {w.worker_id}\n{w.output[-4000:]}" for w in workers)
            raise AssertionError(f"{stuck}\n{logs}") from None
    finally:
        codes = [await worker.stop() for worker in workers]
    assert codes == [0, 0], [w.output for w in workers]
    assert run.status == "succeeded"
    assert {j.name: (j.status, j.job_status, j.attempts) for j in run.jobs} == dict.fromkeys(
        graph, ("succeeded", "succeeded", 1)
    )

    ids = {j.name: j.job_id for j in run.jobs}
    events = await bench.events(list(ids.values()))
    for name, job_id in ids.items():
        kinds = [kind for kind, _ in events[job_id]]
        assert kinds == ["job.enqueued", "job.leased", "job.succeeded"], (name, kinds)
    time_of = {(name, kind): when for name, job_id in ids.items() for kind, when in events[job_id]}
    for name, deps in graph.items():
        for dep in deps:
            # enqueued (hence leased) only after each dependency succeeded
            assert time_of[(name, "job.enqueued")] >= time_of[(dep, "job.succeeded")], (name, dep)
            assert time_of[(name, "job.leased")] > time_of[(dep, "job.succeeded")], (name, dep)

    # the workers' own records: each job leased once, by one of them, completed once
    leased = Counter(line[0] for worker in workers for line in worker.lines("L"))
    assert leased == Counter(dict.fromkeys(ids.values(), 1))
    accepted = Counter(
        line[0] for worker in workers for line in worker.lines("A") if line[3] == "0"
    )
    assert accepted == Counter(dict.fromkeys(ids.values(), 1))


async def test_a_held_job_is_cancelled_at_its_workers_next_heartbeat(bench: Bench) -> None:
    t, s = bench.job_type, bench.source_id
    started = asyncio.Event()
    cancelled = asyncio.Event()
    seen: list[str] = []

    async def handler(leased: LeasedJob) -> object:
        name = leased.payload["name"] if isinstance(leased.payload, dict) else "?"
        seen.append(f"start {name}")
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append(f"cancelled {name} canceled={leased.canceled}")
            cancelled.set()
            raise
        return None

    worker = bench.worker(handler)
    running = asyncio.create_task(worker.run())
    try:
        run = await bench.packs.create(
            "held",
            [
                job("slow", t, s, payload={"name": "slow"}),
                job("after", t, s, "slow", payload={"name": "after"}),
            ],
        )
        await asyncio.wait_for(started.wait(), 15)
        answer = await bench.packs.cancel(run.pack_run_id)
        assert (answer.canceled_jobs, answer.canceled_pending) == (1, 1)
        await asyncio.wait_for(cancelled.wait(), 10)  # the next heartbeat, within 0.5 s
    finally:
        worker.drain()
        await asyncio.wait_for(running, 15)
    assert seen == ["start slow", "cancelled slow canceled=True"]
    run = await bench.packs.get(run.pack_run_id)
    assert run.status == "canceled"
    assert [(j.name, j.status, j.job_status) for j in run.jobs] == [
        ("slow", "canceled", "canceled"),
        ("after", "canceled", ""),
    ]
    events = await bench.events([run.jobs[0].job_id])
    assert [kind for kind, _ in events[run.jobs[0].job_id]] == [
        "job.enqueued",
        "job.leased",
        "job.canceled",
    ]


async def test_a_failed_run_is_retried_and_then_succeeds(bench: Bench) -> None:
    t, s = bench.job_type, bench.source_id
    failing: set[str] = set()  # pack runs whose "flaky" job fails for good
    ran: list[tuple[str, str]] = []

    async def handler(leased: LeasedJob) -> object:
        name = json.dumps(leased.payload)
        ran.append((leased.job.pack_run_id, name))
        if leased.payload == {"name": "flaky"} and leased.job.pack_run_id in failing:
            raise JobFailed("dependency", "HTTP_503", "upstream down", retryable=False)
        return {"ok": True}

    first = await bench.packs.create(
        "flaky-pack",
        [
            job("flaky", t, s, payload={"name": "flaky"}),
            job("after", t, s, "flaky", payload={"name": "after"}),
            job("solo", t, s, payload={"name": "solo"}),
        ],
    )
    failing.add(first.pack_run_id)
    worker = bench.worker(handler)
    running = asyncio.create_task(worker.run())
    try:
        first = await bench.until(first.pack_run_id, lambda r: r.status != "running")
        assert first.status == "failed"
        assert [(j.name, j.status) for j in first.jobs] == [
            ("flaky", "failed"),
            ("after", "skipped"),
            ("solo", "succeeded"),
        ]
        second = await bench.backfill.retry(first.pack_run_id)
        assert second.retry_of == first.pack_run_id
        assert [(j.name, list(j.depends_on)) for j in second.jobs] == [
            ("flaky", []),
            ("after", ["flaky"]),
        ]
        second = await bench.until(second.pack_run_id, lambda r: r.status != "running")
    finally:
        worker.drain()
        await asyncio.wait_for(running, 15)
    assert second.status == "succeeded"
    assert [(j.name, j.status, j.attempts) for j in second.jobs] == [
        ("flaky", "succeeded", 1),
        ("after", "succeeded", 1),
    ]
    assert (await bench.packs.get(first.pack_run_id)).retried_by == second.pack_run_id
    by_run: dict[str, list[str]] = {}
    for pack_run_id, name in ran:
        by_run.setdefault(pack_run_id, []).append(json.loads(name)["name"])
    assert sorted(by_run[first.pack_run_id]) == ["flaky", "solo"]
    assert by_run[second.pack_run_id] == ["flaky", "after"]


async def test_concurrent_advances_on_two_stores_start_each_job_once(
    bench: Bench, database_url: str
) -> None:
    """Two stores (two connection pools, as two replicas have) advance the same run at
    once after its first job ended with no hint (as on another replica): the run's
    lock and the conditional updates let exactly one of them start the ten jobs that
    waited, once each."""
    t, s = bench.job_type, bench.source_id
    engine = bench.app.pack_runs
    assert engine is not None
    await engine.stop()  # only the advances below move the run
    other = SqlStore(Database(database_url))
    try:
        run = await bench.packs.create(
            "fan-out", [job("root", t, s), *(job(f"leaf{i}", t, s, "root") for i in range(10))]
        )
        async with bench.app.db.engine.begin() as conn:  # ended elsewhere: no hint here
            await conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.job_id == run.jobs[0].job_id)
                .values(status="succeeded", finished_at=sa.func.now())
            )
        stores = [bench.app.store, other] * 4
        moved = await asyncio.gather(
            *(
                advance(store, bench.tenant, run.pack_run_id, now=datetime.now(UTC))
                for store in stores
            )
        )
        assert sorted(moved) == [False] * 7 + [True]
        run = await bench.packs.get(run.pack_run_id)
        assert [j.status for j in run.jobs] == ["succeeded"] + ["running"] * 10
        async with bench.app.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(_jobs.c.job_id).where(_jobs.c.pack_run_id == run.pack_run_id)
                )
            ).all()
            started = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_events)
                    .where(
                        _events.c.subject == f"packRuns/{run.pack_run_id}",
                        _events.c.type == "pack_run.job_started",
                    )
                )
            ).scalar_one()
        assert len(rows) == 11  # the root and ten leaves, each enqueued once
        assert {j.job_id for j in run.jobs} == {row.job_id for row in rows}
        assert started == 11
        # and the loop of either replica finds nothing more to do
        assert await PackRunEngine(other, 60).run_once() == 0
    finally:
        await other.db.dispose()
        engine.start()
