"""The work path at speed (issue 9 point 8): enqueue, lease and complete on SQLite and
PostgreSQL, with the server and the workers each in their own processes.

For each backend this starts `orchestrator serve` in a child process on a fresh
database (a temporary SQLite file; a new PostgreSQL database on the shared server,
dropped at the end), then measures, with real bearer tokens over loopback gRPC:

- end to end: jobs/s from the first enqueue to the last completion, the jobs batch
  enqueued (1,000 per RPC) while worker processes lease and complete them with a
  no-op handler, one job per LeaseJobs/CompleteJobs RPC ("unbatched") and 100 per
  RPC ("batched");
- batch enqueue: jobs/s of BatchEnqueueJobs, 1,000 jobs per RPC, four calls in flight;
- single enqueue: EnqueueJob p50/p99, one call in flight;
- enqueue to lease: from the start of an EnqueueJob call to the moment an idle worker
  (long-polling LeaseJobs, waitTimeout 5 s) holds the lease, p50/p99, one job at a
  time;
- pages: `GET /jobengine/jobs?limit=100` (REST) last page vs first page with the
  tenant holding `--page-rows` jobs (seeded straight into the database: one INSERT ..
  SELECT generate_series on PostgreSQL, a recursive CTE on SQLite). The last page is
  fetched with the continuation token the server would hand a client that walked
  there (signed with the server's page-token secret, which the bench sets);
- the server's peak RSS (VmHWM of its /proc status) over the whole run.

One table, or `--json` for one object keyed by backend. `--quick` is the same
measurement with smaller counts (about 80 s for both backends). `make bench` runs the
default (about three minutes on the 2-core box).

    .venv/bin/python bench/jobs.py [--quick] [--json] [--backend sqlite|postgres]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import httpx
import sqlalchemy as sa
from _shared import ServerProcess, bench_database, p50_p99
from google.protobuf import duration_pb2

from orchestrator.jobengine.v1 import job_pb2
from orchestrator.jobengine.v1 import jobs_service_pb2 as jobs_pb
from orchestrator.jobengine.v1 import jobs_service_pb2_grpc as jobs_grpc
from orchestrator.jobengine.v1 import worker_service_pb2 as worker_pb
from orchestrator.jobengine.v1 import worker_service_pb2_grpc as worker_grpc
from server.domain.jobs import JOB_LISTING, JobQuery
from server.domain.pagination import PageTokens
from server.identity.authorization_server import clients
from server.storage.db import Database
from server.storage.tables import JobRow, SourceRow, TenantRow, table_of

TENANT = "bench"
PAGE_LIMIT = 100
PHASES = "batched,unbatched,enqueue,latency,pages"
TARGETS = {  # the targets, for the table (PostgreSQL unless noted)
    "e2e_batched_jobs_per_s": ">= 5000 (SQLite >= 500)",
    "e2e_unbatched_jobs_per_s": ">= 1000",
    "batch_enqueue_jobs_per_s": ">= 20000",
    "enqueue_p50_ms": "",
    "enqueue_p99_ms": "",
    "lease_latency_p50_ms": "<= 5",
    "lease_latency_p99_ms": "<= 20",
    "last_vs_first_page": "<= 1.5",
    "server_peak_rss_mib": "",
}


@dataclass(frozen=True)
class Counts:
    e2e_batched: int
    e2e_unbatched: int
    e2e_sqlite_batched: int
    e2e_sqlite_unbatched: int
    batch_enqueue: int
    single_enqueue: int
    lease_latency: int
    page_rows: int
    page_fetches: int


FULL = Counts(50_000, 10_000, 10_000, 2_000, 100_000, 2_000, 500, 1_000_000, 50)
QUICK = Counts(10_000, 2_000, 3_000, 500, 10_000, 300, 100, 100_000, 15)


# --- the worker processes ---------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPlan:
    target: str
    metadata: tuple[tuple[str, str], ...]
    job_type: str
    max_jobs: int  # jobs per LeaseJobs and per CompleteJobs call
    loops: int  # lease/complete loops in flight in this process
    wait_s: float  # LeaseJobs waitTimeout
    report_leases: bool  # put (payload "i", lease time) on the queue per lease


def _duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))


def worker_process(
    plan: WorkerPlan,
    ready: Any,  # mp.Value: processes connected and polling
    done: Any,  # mp.Value: jobs completed by every process
    last_done: Any,  # mp.Value: time.time() of the latest completion
    leases: Any,  # mp.Queue of (i, time.time()) when plan.report_leases
) -> None:
    """Lease and complete with a no-op handler until terminated."""
    asyncio.run(_work(plan, ready, done, last_done, leases))


async def _work(plan: WorkerPlan, ready: Any, done: Any, last_done: Any, leases: Any) -> None:
    async with grpc.aio.insecure_channel(plan.target) as channel:
        stub = worker_grpc.WorkerServiceStub(channel)
        worker_id = f"bench-{os.getpid()}"

        def request(wait_s: float) -> worker_pb.LeaseJobsRequest:
            return worker_pb.LeaseJobsRequest(
                worker_id=worker_id,
                job_types=[plan.job_type],
                max_jobs=plan.max_jobs,
                wait_timeout=_duration(wait_s),
                lease_duration=_duration(300),
            )

        await stub.LeaseJobs(request(0), metadata=plan.metadata)  # connected and authorized
        with ready.get_lock():
            ready.value += 1
        polling = request(plan.wait_s)

        async def loop() -> None:
            while True:
                answer = await stub.LeaseJobs(polling, metadata=plan.metadata)
                if not answer.leases:
                    continue
                if plan.report_leases:
                    now = time.time()
                    for lease in answer.leases:
                        leases.put(
                            (int(lease.job.payload.struct_value.fields["i"].number_value), now)
                        )
                await stub.CompleteJobs(
                    worker_pb.CompleteJobsRequest(
                        worker_id=worker_id,
                        completions=[worker_pb.JobCompletion(token=x.token) for x in answer.leases],
                    ),
                    metadata=plan.metadata,
                )
                now = time.time()
                with done.get_lock():
                    done.value += len(answer.leases)
                    last_done.value = max(last_done.value, now)

        await asyncio.gather(*(loop() for _ in range(plan.loops)))


class Workers:
    """`processes` worker processes following one plan."""

    def __init__(self, plan: WorkerPlan, processes: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready = ctx.Value("i", 0)
        self.done = ctx.Value("q", 0)
        self.last_done = ctx.Value("d", 0.0)
        self.leases: Any = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=worker_process,
                args=(plan, self.ready, self.done, self.last_done, self.leases),
                daemon=True,
            )
            for _ in range(processes)
        ]

    async def __aenter__(self) -> Workers:
        for proc in self._procs:
            proc.start()
        deadline = time.monotonic() + 60
        while self.ready.value < len(self._procs):
            if time.monotonic() > deadline or any(p.exitcode is not None for p in self._procs):
                raise RuntimeError("worker processes did not start")
            await asyncio.sleep(0.05)
        return self

    async def wait_done(self, total: int, timeout: float) -> float:
        """Until `total` jobs are completed; the time of the last completion."""
        deadline = time.monotonic() + timeout
        while self.done.value < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.done.value} of {total} jobs completed in time")
            await asyncio.sleep(0.01)
        return float(self.last_done.value)

    async def __aexit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join(10)


# --- setup ------------------------------------------------------------------------------


async def prepare(url: str) -> tuple[str, str, str]:
    """Schema, tenant, an enabled source and a client bound to the tenant with
    orch:read and orch:operate: the source id, client id and secret."""
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
    created = await clients.create_client(db, scopes=["orch:read", "orch:operate"], tenant=TENANT)
    source_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.insert(table_of(SourceRow)).values(
                source_id=source_id,
                tenant_id=TENANT,
                name="bench",
                source_type="manual",
                enabled=True,
                paused=False,
                created_at=now,
                updated_at=now,
            )
        )
    await db.dispose()
    return source_id, created.client.client_id, created.client_secret


# --- measurements -----------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        server: ServerProcess,
        target: str,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        self.server = server
        self.cpu_ms_per_job = 0.0
        self.after_answer: list[float] = []
        self.target = target
        self.metadata = tuple(metadata)
        self.enqueue_metadata = (*self.metadata, ("x-stella-operator-reason", "benchmark"))
        self.jobs = jobs_grpc.JobsServiceStub(channel)
        self.source_id = ""

    def job(self, job_type: str, payload: dict[str, Any] | None = None) -> job_pb2.Job:
        job = job_pb2.Job(job_type=job_type, source_id=self.source_id)
        if payload is not None:
            job.payload.struct_value.update(payload)
        return job

    async def batch_enqueue(
        self,
        job_type: str,
        total: int,
        in_flight: int = 4,
    ) -> float:
        """Enqueue `total` jobs, 1,000 per call; the seconds it took."""
        batch = [self.job(job_type) for _ in range(1000)]
        calls = [batch[: min(1000, total - start)] for start in range(0, total, 1000)]
        started = time.perf_counter()

        async def caller() -> None:
            while calls:
                jobs = calls.pop()
                answer = await self.jobs.BatchEnqueueJobs(
                    jobs_pb.BatchEnqueueJobsRequest(jobs=jobs), metadata=self.enqueue_metadata
                )
                assert len(answer.results) == len(jobs) and all(r.created for r in answer.results)

        await asyncio.gather(*(caller() for _ in range(in_flight)))
        return time.perf_counter() - started

    async def single_enqueue(self, job_type: str, count: int) -> list[float]:
        latencies = []
        for i in range(count):
            request = jobs_pb.EnqueueJobRequest(job=self.job(job_type, {"i": i}))
            started = time.perf_counter()
            await self.jobs.EnqueueJob(request, metadata=self.enqueue_metadata)
            latencies.append(time.perf_counter() - started)
        return latencies

    async def end_to_end(
        self, job_type: str, total: int, *, max_jobs: int, processes: int, loops: int
    ) -> float:
        """Jobs/s from the first enqueue to the last completion."""
        plan = WorkerPlan(self.target, self.metadata, job_type, max_jobs, loops, 1.0, False)
        async with Workers(plan, processes) as workers:
            cpu = self.server.cpu_seconds()
            started = time.time()
            await self.batch_enqueue(job_type, total)
            finished = await workers.wait_done(total, timeout=600)
            self.cpu_ms_per_job = (self.server.cpu_seconds() - cpu) * 1000 / total
        return total / (finished - started)

    async def lease_latency(self, job_type: str, count: int) -> list[float]:
        """Enqueue one job at a time to idle long-polling workers: start of the
        EnqueueJob call to the worker holding the lease, in seconds."""
        plan = WorkerPlan(self.target, self.metadata, job_type, 1, 2, 5.0, True)
        latencies = []
        self.after_answer = []
        async with Workers(plan, 2) as workers:
            await asyncio.sleep(0.5)  # every loop in its long poll
            for i in range(count):
                request = jobs_pb.EnqueueJobRequest(job=self.job(job_type, {"i": i}))
                started = time.time()
                await self.jobs.EnqueueJob(request, metadata=self.enqueue_metadata)
                answered = time.time()
                got, leased_at = await asyncio.to_thread(workers.leases.get, True, 10)
                assert got == i
                latencies.append(leased_at - started)
                self.after_answer.append(leased_at - answered)
                await asyncio.sleep(0.01)  # the worker back in its long poll
        return latencies


def _sqlite_path(url: str) -> str:
    return url.split("///", 1)[1]


async def seed_pages(url: str, source_id: str, total: int) -> None:
    """Bring the tenant to `total` jobs with finished rows older than every other job,
    1 ms apart from a day ago, straight in the database (inside the retention, so the
    server's pruning leaves them alone)."""
    base = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(_sqlite_path(url), timeout=60)
        (have,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE tenant_id = ?", (TENANT,)
        ).fetchone()
        stamp = (
            f"strftime('%Y-%m-%d %H:%M:%S', '{base:%Y-%m-%d %H:%M:%S}', "
            "'+' || (i / 1000) || ' seconds') || printf('.%06d', i % 1000 * 1000)"
        )
        conn.execute(
            f"""
            WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
            INSERT INTO jobs (job_id, tenant_id, job_type, source_id, status, priority,
                payload, attempts, max_attempts, backoff_initial_s, backoff_max_s,
                backoff_multiplier, backoff_jitter, run_at, created_at, updated_at,
                finished_at, result)
            SELECT printf('seed-%026d', i), ?, 'bench.pages', ?, 'succeeded', 0, '{{}}', 1, 3,
                   1.0, 300.0, 2.0, 0.5, {stamp}, {stamp}, {stamp}, {stamp}, '{{}}'
            FROM s
            """,
            (total - have, TENANT, source_id),
        )
        conn.commit()
        conn.execute("ANALYZE")
        conn.close()
        return
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        have = await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant_id = $1", TENANT)
        await conn.execute(
            """
            INSERT INTO jobs (job_id, tenant_id, job_type, source_id, status, priority,
                payload, attempts, max_attempts, backoff_initial_s, backoff_max_s,
                backoff_multiplier, backoff_jitter, run_at, created_at, updated_at,
                finished_at, result)
            SELECT 'seed-' || lpad(i::text, 26, '0'), $2, 'bench.pages', $3, 'succeeded', 0,
                   '{}', 1, 3, 1.0, 300.0, 2.0, 0.5, t, t, t, t, '{}'
            FROM generate_series(1, $1::int) AS i,
                 LATERAL (SELECT $4::timestamptz + i * interval '1 millisecond' AS t) AS x
            """,
            total - have,
            TENANT,
            source_id,
            base,
        )
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


async def last_page_token(url: str, secret: str) -> str:
    """The continuation token of the tenant's last page of PAGE_LIMIT jobs, as the
    server signs it for a client that walked the listing: the key of the job just
    before the oldest PAGE_LIMIT jobs (the listing runs newest first)."""
    jobs = table_of(JobRow)
    db = Database(url)
    try:
        async with db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(jobs.c.created_at, jobs.c.job_id)
                    .where(jobs.c.tenant_id == TENANT)
                    .order_by(jobs.c.created_at, jobs.c.job_id)
                    .limit(1)
                    .offset(PAGE_LIMIT)
                )
            ).one()
    finally:
        await db.dispose()
    values = (row.created_at, row.job_id)
    key = tuple(sort.codec.encode(v) for sort, v in zip(JOB_LISTING.sort, values, strict=True))
    binding = JOB_LISTING.binding(JobQuery(tenant_id=TENANT))
    return PageTokens(secret.encode()).encode(key, binding=binding)


def page_ratio(http_port: int, headers: dict[str, str], token: str, fetches: int) -> float:
    """Median last-page time over median first-page time."""
    base = f"http://127.0.0.1:{http_port}/jobengine/jobs"
    with httpx.Client(timeout=60) as client:

        def fetch(params: dict[str, str | int]) -> float:
            started = time.perf_counter()
            answer = client.get(base, params=params, headers=headers)
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            assert len(answer.json()["items"]) == PAGE_LIMIT, answer.text[:300]
            return elapsed

        first_params: dict[str, str | int] = {"limit": PAGE_LIMIT}
        last_params: dict[str, str | int] = {"limit": PAGE_LIMIT, "continuationToken": token}
        last_page = client.get(base, params=last_params, headers=headers).json()
        assert "continuationToken" not in last_page, "not the last page"
        first: list[float] = []
        last: list[float] = []
        for _ in range(3):  # warm both
            fetch(first_params)
            fetch(last_params)
        for _ in range(fetches):  # interleaved, so drift hits both alike
            first.append(fetch(first_params))
            last.append(fetch(last_params))
    return statistics.median(last) / statistics.median(first)


# --- one backend ------------------------------------------------------------------------


async def run_backend(
    backend: str,
    counts: Counts,
    pg_admin: str,
    log: Any,
    phases: frozenset[str],
    loops: tuple[int, int],
) -> dict[str, float]:
    async with bench_database(backend, pg_admin, "jobs") as (workdir, url):
        secret = secrets.token_hex(32)
        source_id, client_id, client_secret = await prepare(url)
        server = ServerProcess(url, workdir, env={"ORCHESTRATOR_PAGE_TOKEN_SECRET": secret})
        log(f"{backend}: server pid {server.proc.pid}")
        try:
            return await _measure(
                backend,
                url,
                server,
                source_id,
                (client_id, client_secret),
                counts,
                secret,
                log,
                phases,
                loops,
            )
        finally:
            server.stop()


async def _measure(
    backend: str,
    url: str,
    server: ServerProcess,
    source_id: str,
    credentials: tuple[str, str],
    counts: Counts,
    secret: str,
    log: Any,
    phases: frozenset[str],
    loops: tuple[int, int],
) -> dict[str, float]:
    issued = await asyncio.to_thread(
        httpx.post,
        f"http://127.0.0.1:{server.http_port}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=credentials,
    )
    issued.raise_for_status()
    authorization = f"Bearer {issued.json()['access_token']}"
    metadata = (("x-stella-tenant", TENANT), ("authorization", authorization))
    target = f"127.0.0.1:{server.grpc_port}"
    sqlite = backend == "sqlite"
    figures: dict[str, float] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        bench = Bench(channel, server, target, metadata)
        bench.source_id = source_id
        await bench.batch_enqueue("bench.warmup", 2000)
        await bench.single_enqueue("bench.warmup", 50)

        if "batched" in phases:
            batched = counts.e2e_sqlite_batched if sqlite else counts.e2e_batched
            figures["e2e_batched_jobs_per_s"] = await bench.end_to_end(
                "bench.batched", batched, max_jobs=100, processes=2, loops=loops[0]
            )
            log(
                f"{backend}: e2e batched {figures['e2e_batched_jobs_per_s']:.0f} jobs/s "
                f"(server CPU {bench.cpu_ms_per_job:.3f} ms/job)"
            )
        if "unbatched" in phases:
            unbatched = counts.e2e_sqlite_unbatched if sqlite else counts.e2e_unbatched
            figures["e2e_unbatched_jobs_per_s"] = await bench.end_to_end(
                "bench.unbatched", unbatched, max_jobs=1, processes=2, loops=loops[1]
            )
            log(
                f"{backend}: e2e unbatched {figures['e2e_unbatched_jobs_per_s']:.0f} jobs/s "
                f"(server CPU {bench.cpu_ms_per_job:.3f} ms/job)"
            )
        if "enqueue" in phases:
            cpu = server.cpu_seconds()
            seconds = await bench.batch_enqueue("bench.enqueue", counts.batch_enqueue)
            cpu_ms_per_job = (server.cpu_seconds() - cpu) * 1000 / counts.batch_enqueue
            figures["batch_enqueue_jobs_per_s"] = counts.batch_enqueue / seconds
            log(
                f"{backend}: batch enqueue {figures['batch_enqueue_jobs_per_s']:.0f} jobs/s "
                f"(server CPU {cpu_ms_per_job:.3f} ms/job)"
            )
            p50, p99 = p50_p99(await bench.single_enqueue("bench.single", counts.single_enqueue))
            figures["enqueue_p50_ms"], figures["enqueue_p99_ms"] = p50, p99
            log(f"{backend}: enqueue p50 {p50:.2f} ms p99 {p99:.2f} ms")
        if "latency" in phases:
            p50, p99 = p50_p99(await bench.lease_latency("bench.latency", counts.lease_latency))
            figures["lease_latency_p50_ms"], figures["lease_latency_p99_ms"] = p50, p99
            after = p50_p99(bench.after_answer)
            log(
                f"{backend}: enqueue->lease p50 {p50:.2f} ms p99 {p99:.2f} ms (from the "
                f"enqueue's answer: p50 {after[0]:.2f} ms p99 {after[1]:.2f} ms)"
            )

    if "pages" not in phases:
        figures["server_peak_rss_mib"] = server.peak_rss_mib()
        return figures
    started = time.perf_counter()
    await seed_pages(url, source_id, counts.page_rows)
    log(f"{backend}: seeded {counts.page_rows} jobs in {time.perf_counter() - started:.1f} s")
    token = await last_page_token(url, secret)
    headers = {"X-Stella-Tenant": TENANT, "Authorization": authorization}
    figures["last_vs_first_page"] = await asyncio.to_thread(
        page_ratio, server.http_port, headers, token, counts.page_fetches
    )
    log(f"{backend}: last/first page {figures['last_vs_first_page']:.2f}")
    figures["server_peak_rss_mib"] = server.peak_rss_mib()
    return figures


# --- report -----------------------------------------------------------------------------


def table(results: dict[str, dict[str, float]], counts: Counts) -> str:
    backends = list(results)
    lines = [
        f"{'figure':<26}" + "".join(f"{b:>14}" for b in backends) + "   target",
        "-" * (26 + 14 * len(backends) + 30),
    ]
    for key, target in TARGETS.items():
        if any(key not in results[b] for b in backends):
            continue
        cells = "".join(f"{results[b][key]:>14.{3 if 'page' in key else 1}f}" for b in backends)
        lines.append(f"{key:<26}{cells}   {target}")
    load = os.getloadavg()
    lines.append(
        f"({counts.page_rows:,} rows for the page ratio; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs)"
    )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    counts = QUICK if args.quick else FULL
    if args.page_rows:
        counts = Counts(**{**counts.__dict__, "page_rows": args.page_rows})
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for backend in backends:
        results[backend] = await run_backend(
            backend,
            counts,
            args.pg_url,
            log,
            frozenset(args.phases.split(",")),
            (args.batched_loops, args.unbatched_loops),
        )
    log(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps({b: {k: round(v, 3) for k, v in f.items()} for b, f in results.items()}))
    else:
        print(table(results, counts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (about 80 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--backend", choices=["both", "sqlite", "postgres"], default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "ORCHESTRATOR_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server to create the bench database on (env ORCHESTRATOR_BENCH_PG_URL)",
    )
    parser.add_argument(
        "--phases",
        default=PHASES,
        help=f"comma-separated subset of {PHASES} (default: all)",
    )
    parser.add_argument(
        "--batched-loops", type=int, default=2, help="lease loops per worker process, batched"
    )
    parser.add_argument(
        "--unbatched-loops", type=int, default=8, help="lease loops per worker process, unbatched"
    )
    parser.add_argument("--page-rows", type=int, default=0, help="rows for the page ratio")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
