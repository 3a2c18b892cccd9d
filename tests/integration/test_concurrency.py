"""Correctness under concurrency (issue 9 point 6): two server processes on one fresh
PostgreSQL database, 8 worker processes (the worker SDK over gRPC, four on each
server), 5,000 jobs enqueued in batches, with SIGKILLs of workers mid-job and leases
that run out on the way: every job succeeds exactly once, no job is ever held by two
live leases, and a quota's concurrency cap holds at every sampled instant.

Kind: an end-to-end invariant over real processes; nothing in-process, nothing mocked.
How each claim is shown:
- exactly once: `tests.support.fleet.verify_exactly_once` (rows, event log and the
  completions the workers saw accepted, which must agree);
- the fence exercised: handlers that block their worker past its 2 s lease (no
  heartbeats) send their completion after the reaper gave the job to another worker;
  those completions are refused (FAILED_PRECONDITION), at least once per stall;
- kills mid-job: each killed worker held jobs when it died, and those jobs show a
  `job.lease_expired` naming it and then succeed on a later attempt;
- the quota: a sampler reads `quotas.active` and the number of leased jobs of its
  type in one statement every 50 ms: both at most maxActive, equal to each other
  (accounting never drifts), the cap reached, and active 0 at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.jobs import JobsClient, new_job
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from server.dev import DEMO_TENANT
from tests.support.fleet import (
    FAILED_PRECONDITION,
    Ledger,
    Server,
    WorkerProcess,
    count_status,
    fresh_database,
    job_records,
    plain_dsn,
    verify_exactly_once,
    wait_for,
)
from tests.support.process import base_env
from tests.support.quotas import QuotasClient

PUBLIC_URL = "http://127.0.0.1:18098"

JOBS = 5_000
CAPPED = 500  # of JOBS, under the quota
MAX_ACTIVE = 5
STALLS = 6  # jobs whose first attempt blocks its worker past the lease
STALL_SECONDS = 5.0  # > 2 s lease + 1 s reaper interval + a pass
WORKERS = 8
KILLS = 4
LEASE_SECONDS = 2.0
WORK_SECONDS = 0.01
RUN_SECONDS = 150.0

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh database of its own on the shared server, dropped afterwards."""
    async with fresh_database("orch_concurrency") as url:
        yield url


class QuotaSampler:
    """Reads the quota's `active` and the leased jobs of its type in one statement
    (one snapshot) every 50 ms until stopped; the last sample is taken after `stop`,
    so it shows the state the test stopped at, not one up to 50 ms older."""

    def __init__(self, database_url: str, quota_id: str) -> None:
        self.database_url = database_url
        self.quota_id = quota_id
        self.samples: list[tuple[int, int]] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        conn = await asyncpg.connect(plain_dsn(self.database_url), timeout=10)
        try:
            while True:
                stopping = self._stop.is_set()
                row = await conn.fetchrow(
                    "SELECT q.active, (SELECT count(*) FROM jobs j WHERE j.tenant_id = "
                    "q.tenant_id AND j.job_type = q.job_type AND j.status = 'leased') AS leased "
                    "FROM quotas q WHERE q.quota_id = $1",
                    self.quota_id,
                )
                assert row is not None
                self.samples.append((int(row["active"]), int(row["leased"])))
                if stopping:
                    break
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()


async def test_5000_jobs_on_two_servers_and_8_workers_succeed_exactly_once(
    tmp_path: Path, pg_url: str
) -> None:
    started = time.monotonic()
    env = base_env(
        tmp_path,
        ORCHESTRATOR_DATABASE_URL=pg_url,
        ORCHESTRATOR_PUBLIC_URL=PUBLIC_URL,
        LEASE_REAPER_INTERVAL_SECONDS="1",
    )
    for name in ("a", "b", "workers"):
        (tmp_path / name).mkdir()
    servers = [Server(env, tmp_path / "a", dev=True)]
    servers.append(Server(env, tmp_path / "b", dev=False))
    dev_credentials = servers[0].served.credentials
    assert dev_credentials is not None
    client_id, secret = dev_credentials
    workers: list[WorkerProcess] = []
    sampling: asyncio.Task[None] | None = None
    transport = GrpcTransport(servers[0].grpc_target)
    try:
        admin = ClientCredentials(
            token_url=servers[0].token_url,
            client_id=client_id,
            client_secret=secret,
            scopes=["orch:read", "orch:operate", "orch:quota"],
            extra={"quota_reason": "concurrency test"},
        )
        headers = CallerHeaders(tenant=DEMO_TENANT, operator_reason="concurrency test")
        jobs = JobsClient(transport, headers, credentials=admin)
        quotas = QuotasClient(transport, headers, credentials=admin)
        source = await SourcesClient(transport, headers, credentials=admin).register_source(
            "concurrency", "manual"
        )
        quota = await quotas.create_quota("conc.capped", max_active=MAX_ACTIVE, burst=1)

        # 4,500 free jobs and 500 under the quota; a few of each stall past their lease.
        stalled = {n * (JOBS // STALLS) + 7 for n in range(STALLS)}
        batch = []
        for n in range(JOBS):
            payload: dict[str, object] = {"n": n}
            if n in stalled:
                payload["stall"] = STALL_SECONDS
            job_type = "conc.capped" if n % (JOBS // CAPPED) == 0 else "conc.work"
            batch.append(new_job(job_type, source.source_id, payload=payload, max_attempts=10))
        ordered: list[str] = []  # job ids by n
        for start in range(0, JOBS, 1000):
            response = await jobs.batch_enqueue_jobs(batch[start : start + 1000])
            assert [r.status.code for r in response.results] == [0] * 1000
            ordered += [r.job.job_id for r in response.results]
        job_ids = set(ordered)
        assert len(job_ids) == JOBS
        assert sum(1 for job in batch if job.job_type == "conc.capped") == CAPPED

        worker_credentials = ClientCredentials(
            token_url=servers[0].token_url, client_id=client_id, client_secret=secret
        )

        async def start_worker(worker_id: str, server: Server) -> WorkerProcess:
            worker = await WorkerProcess.start(
                tmp_path / "workers",
                worker_id,
                target=server.grpc_target,
                credentials=worker_credentials,
                job_types=["conc.work", "conc.capped"],
                concurrency=16,
                lease_duration=LEASE_SECONDS,
                work_seconds=WORK_SECONDS,
            )
            workers.append(worker)
            return worker

        sampler = QuotaSampler(pg_url, quota.quota_id)
        sampling = asyncio.create_task(sampler.run())
        alive = [await start_worker(f"w{i}", servers[i % 2]) for i in range(WORKERS)]

        # Kill a worker (SIGKILL) each time another 15% of the jobs succeeded; a fresh
        # one takes its place on the same server, so 8 run throughout.
        killed: list[WorkerProcess] = []
        held: dict[str, set[str]] = {}  # killed worker -> job ids its handlers held
        for k in range(KILLS):
            target = (k + 1) * JOBS * 15 // 100

            async def reached(target: int = target) -> bool:
                return await count_status(pg_url, DEMO_TENANT, "succeeded") >= target

            await wait_for(reached, f"{target} jobs succeeded", timeout=RUN_SECONDS)
            victim = alive[k]

            async def running_handlers(victim: WorkerProcess = victim) -> bool:
                # Leased and not yet reported: its handlers are running.
                return len(victim.unreported_leases()) >= 2

            # Stopped first, so what it holds is read from a record that no longer
            # changes: a completion sent between a look and a SIGKILL would otherwise
            # leave a "mid-job" kill holding nothing.
            while True:
                await wait_for(
                    running_handlers, "jobs in hand", timeout=RUN_SECONDS, interval=0.005
                )
                await victim.freeze()
                in_hand = victim.unreported_leases()
                if in_hand:
                    break
                victim.thaw()
            assert await victim.kill() == -9
            killed.append(victim)
            held[victim.worker_id] = in_hand
            alive[k] = await start_worker(f"w{k}-again", servers[k % 2])

        async def all_done() -> bool:
            return await count_status(pg_url, DEMO_TENANT, "succeeded") == JOBS

        await wait_for(all_done, f"all {JOBS} jobs succeeded", timeout=RUN_SECONDS)
        run_seconds = time.monotonic() - started
        sampler.stop()
        await sampling
        for worker in alive:
            assert worker.proc.returncode is None, worker.output
        assert [await worker.stop() for worker in alive] == [0] * WORKERS
        final_quota = await quotas.get_quota(quota.quota_id)
    finally:
        if sampling is not None and not sampling.done():
            sampling.cancel()
        await transport.close()
        for worker in workers:
            if worker.proc.returncode is None:
                await worker.kill()
        statuses = [server.stop() for server in servers]
    assert statuses == [0, 0], servers[0].output + servers[1].output
    for server in servers:
        assert "Traceback" not in server.output, server.output
    for worker in workers:
        assert "Traceback" not in worker.output, worker.output

    # Exactly once: rows, events and the workers' accepted completions agree.
    records = await job_records(pg_url, DEMO_TENANT)
    ledger = Ledger.read(workers)
    verdict = verify_exactly_once(records, ledger, job_ids)
    killed_ids = {worker.worker_id for worker in killed}
    # Only a killed worker can have sent a completion it never heard back about.
    assert set(verdict.unacknowledged) <= killed_ids, verdict
    assert verdict.acknowledged + sum(verdict.unacknowledged.values()) == JOBS

    # The fence was exercised: stalled workers' completions came after their leases
    # were reaped and were refused, and only ever as FAILED_PRECONDITION.
    refusals = ledger.refusal_codes()
    assert set(refusals) == {FAILED_PRECONDITION}, refusals
    assert refusals[FAILED_PRECONDITION] >= STALLS
    for n in stalled:
        kinds = [kind for kind, _ in records[ordered[n]].events]
        assert "job.lease_expired" in kinds, (n, kinds)
        assert records[ordered[n]].attempts >= 2

    # Each killed worker died holding jobs: every one of them has a lease expiry
    # naming it, and succeeded on a later attempt.
    assert sorted(held) == sorted(worker.worker_id for worker in killed)
    for worker_id, job_ids_held in held.items():
        assert job_ids_held, worker_id
        for job_id in job_ids_held:
            record = records[job_id]
            expired_for = [
                data.get("workerId") for kind, data in record.events if kind == "job.lease_expired"
            ]
            assert worker_id in expired_for, (worker_id, job_id, record.events)
            assert record.attempts >= 2, (worker_id, job_id, record.attempts)

    # The quota: never over the cap, accounting equal to the leased rows, the cap
    # reached, and every slot back at the end.
    assert len(sampler.samples) >= 50
    over = [s for s in sampler.samples if s[0] > MAX_ACTIVE or s[1] > MAX_ACTIVE]
    assert over == []
    drift = [s for s in sampler.samples if s[0] != s[1]]
    assert drift == []
    assert max(active for active, _ in sampler.samples) == MAX_ACTIVE
    assert (final_quota.usage.active, sampler.samples[-1]) == (0, (0, 0))
    print(  # noqa: T201 (the figures, with -s)
        f"\n{JOBS} jobs, {WORKERS} workers, {KILLS} kills, {STALLS} stalls: "
        f"{run_seconds:.1f} s; {verdict.acknowledged} acknowledged, "
        f"{dict(verdict.unacknowledged)} unacknowledged (killed), "
        f"{refusals[FAILED_PRECONDITION]} stale completions refused, "
        f"{len(sampler.samples)} quota samples"
    )
