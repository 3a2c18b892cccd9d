"""The mesh API's ingestion and workflows at speed, and what tracing costs (issue 13
point 7), on SQLite and PostgreSQL.

For each backend, on a fresh database (a temporary SQLite file; a new PostgreSQL
database on the shared server, dropped at the end), `orchestrator serve` in a child
process (the shipped `multi_source_ingestion` definition is stored at its start), a
client bound to the bench tenant with orch:read and orch:operate, real bearer tokens,
plain httpx over keep-alive HTTP/1.1:

- ingest: `POST /ingest` `{source, scope, correlation_id}` (sources in turn), one call
  in flight: p50/p99; then INGESTERS concurrent connections: requests/s;
- workflow: `POST /workflows/run` of the shipped definition (a parallel fork of four
  service tasks `ingest.*`, their join, then `analysis.consistency`) with a waiting
  worker pool (WORKER_PROCESSES child processes of the worker SDK, long-polling,
  WORKER_CONCURRENCY handlers each, completing every job at once with a small
  result); runs started one every RUN_GAP_S (open loop, light load); start ->
  completed per run from the instance row, both ends stamped by the server's clock
  (`created_at` at the start's transaction, `ended_at` at the step that reached the
  end node): p50/p99;
- tracing overhead: two fresh servers side by side on the same database, one with
  ORCHESTRATOR_TRACING_ENABLED=false, the other with tracing on (the default);
  after RING_FILL calls each (the traced server's ring of traces full), paired rounds
  of `GET /workflows` on each (the order alternating round by round), the median
  latency of each side per round, and the median over rounds of on/off - 1, in
  percent.

Targets (the issue's): workflow start -> completed p50 <= 50 ms on PostgreSQL;
tracing overhead <= 10 %. One table, or `--json` for one object keyed by backend with
`ingest_p50_ms`, `ingest_p99_ms`, `ingest_per_s`, `workflow_p50_ms`,
`workflow_p99_ms`, `tracing_off_p50_ms`, `tracing_on_p50_ms`,
`tracing_overhead_pct`. `--quick` is the same with smaller counts.

    .venv/bin/python bench/mesh.py [--quick] [--json] [--backend sqlite|postgres]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import signal
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from _shared import ServerProcess, bench_database, cli, p50_p99

from clients.auth import ClientCredentials
from clients.worker import LeasedJob, Worker
from server.identity.authorization_server import clients
from server.storage.db import Database
from server.storage.tables import OrchestraInstanceRow, TenantRow, table_of

TENANT = "bench"
SOURCES = ("github", "jira", "confluence", "swagger")
JOB_TYPES = (*(f"ingest.{source}" for source in SOURCES), "analysis.consistency")
SHIPPED = "multi_source_ingestion"
REASON = {"X-Stella-Operator-Reason": "bench/mesh.py"}
INGESTERS = 16
WORKER_PROCESSES = 2
WORKER_CONCURRENCY = 16
WARMUP = 20
# GETs each server answers before the tracing figure: more than the 1000 traces the ring
# holds by default (ORCHESTRATOR_TRACING_MAX_TRACES), so the figure is its steady state.
RING_FILL = 1200
RUN_GAP_S = 0.2  # between workflow starts (each run is five jobs, two steps deep)
TARGETS = {
    "ingest_p50_ms": "",
    "ingest_p99_ms": "",
    "ingest_per_s": "",
    "workflow_p50_ms": "<= 50 (PostgreSQL)",
    "workflow_p99_ms": "",
    "tracing_off_p50_ms": "",
    "tracing_on_p50_ms": "",
    "tracing_overhead_pct": "<= 10",
}


@dataclass(frozen=True)
class Counts:
    ingests: int  # timed one-in-flight ingests
    ingest_burst: int  # ingests of the throughput figure
    runs: int  # timed workflow runs
    rounds: int  # paired rounds of the tracing figure
    per_round: int  # GETs per server per round


FULL = Counts(ingests=2000, ingest_burst=4000, runs=300, rounds=40, per_round=50)
QUICK = Counts(ingests=300, ingest_burst=600, runs=60, rounds=12, per_round=30)


# --- set-up -----------------------------------------------------------------------------


async def prepare(url: str) -> tuple[str, str]:
    """Schema, tenant and a client bound to it with orch:read and orch:operate."""
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
    created = await clients.create_client(db, scopes=["orch:read", "orch:operate"], tenant=TENANT)
    await db.dispose()
    return created.client.client_id, created.client_secret


async def access_token(base: str, client_id: str, secret: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        response = await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


# --- workers (child processes) ------------------------------------------------------------


def worker_process(
    ready: Any, target: str, token_url: str, client_id: str, secret: str, concurrency: int
) -> None:
    """A worker of the SDK for every job type of the shipped workflow, completing each
    job at once with a small result (as examples/ingest_worker.py answers); sets `ready`
    once it holds a token; drains and exits on SIGTERM."""

    async def handler(job: LeasedJob) -> object:
        if job.job_type.startswith("ingest."):
            return {f"ingest_{job.job_type[7:]}": {"documents": 10}}
        return {"analysis": {"documents": 40, "findings": 0}}

    logging.getLogger("clients.worker").setLevel(logging.ERROR)

    async def work() -> None:
        credentials = ClientCredentials(token_url, client_id, secret, scopes=["orch:operate"])
        await credentials.authorization()
        worker = Worker.connect(
            target,
            job_types=list(JOB_TYPES),
            handler=handler,
            credentials=credentials,
            concurrency=concurrency,
            flush_interval=0.0,
            grace_period=5,
        )
        ready.set()
        await worker.run(handle_signals=True)

    asyncio.run(work())


class Workers:
    """`count` worker processes; returns once each is ready to poll."""

    def __init__(self, count: int, *args: Any) -> None:
        context = mp.get_context("spawn")
        self.ready = [context.Event() for _ in range(count)]
        self.procs = [
            context.Process(target=worker_process, args=(ready, *args)) for ready in self.ready
        ]
        for proc in self.procs:
            proc.start()
        for ready in self.ready:
            if not ready.wait(60):
                self.stop()
                raise RuntimeError("a worker process did not start within 60 s")
        time.sleep(0.5)  # their first long polls

    def stop(self) -> None:
        for proc in self.procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()


# --- measurements -----------------------------------------------------------------------


def _ingest_body(i: int) -> dict[str, str]:
    return {
        "source": SOURCES[i % len(SOURCES)],
        "scope": f"bench/repo-{i % 97}",
        "correlation_id": f"bench-{i}",
    }


async def ingest_latency(http: httpx.AsyncClient, count: int) -> dict[str, float]:
    """POST /ingest p50/p99, one call in flight."""
    for i in range(WARMUP):
        _ok(await http.post("/ingest", json=_ingest_body(i), headers=REASON), 202)
    samples: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        response = await http.post("/ingest", json=_ingest_body(i), headers=REASON)
        samples.append(time.perf_counter() - started)
        _ok(response, 202)
    p50, p99 = p50_p99(samples)
    return {"ingest_p50_ms": p50, "ingest_p99_ms": p99}


async def ingest_throughput(base: str, token: str, total: int) -> float:
    """Ingests/s with INGESTERS connections sending back to back."""
    remaining = iter(range(total))
    headers = {"Authorization": f"Bearer {token}", **REASON}

    async def sender() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            for i in remaining:
                _ok(await http.post("/ingest", json=_ingest_body(i)), 202)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(INGESTERS)))
    return total / (time.perf_counter() - started)


async def workflow_runs(http: httpx.AsyncClient, url: str, count: int) -> dict[str, float]:
    """Start -> completed of the shipped workflow with the worker pool waiting, p50/p99
    in ms from each instance's created_at and ended_at (the server's clock)."""
    run_ids: list[str] = []
    for _ in range(WARMUP + count):
        body = _ok(await http.post("/workflows/run", json={}, headers=REASON), 202)
        run_ids.append(str(body["runId"]))
        await asyncio.sleep(RUN_GAP_S)
    instances = table_of(OrchestraInstanceRow)
    db = Database(url)
    try:
        deadline = time.perf_counter() + 120
        while True:
            query = sa.select(
                instances.c.instance_id,
                instances.c.status,
                instances.c.created_at,
                instances.c.ended_at,
            ).where(instances.c.instance_id.in_(run_ids[WARMUP:]))
            async with db.read() as conn:
                rows = (await conn.execute(query)).all()
            if all(row.status != "running" for row in rows):
                break
            if time.perf_counter() > deadline:
                running = sum(row.status == "running" for row in rows)
                raise RuntimeError(f"{running} of {count} runs still running after 120 s")
            await asyncio.sleep(0.1)
    finally:
        await db.dispose()
    statuses = {row.status for row in rows}
    if statuses != {"completed"}:
        raise RuntimeError(f"runs ended {sorted(statuses)}")
    samples = [(row.ended_at - row.created_at).total_seconds() for row in rows]
    p50, p99 = p50_p99(samples)
    return {"workflow_p50_ms": p50, "workflow_p99_ms": p99}


async def _round(http: httpx.AsyncClient, n: int) -> float:
    """Median seconds of `n` GET /workflows on one connection."""
    samples: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get("/workflows")
        samples.append(time.perf_counter() - started)
        _ok(response)
    return statistics.median(samples)


async def tracing_overhead(
    on: ServerProcess, off: ServerProcess, client_id: str, secret: str, counts: Counts
) -> dict[str, float]:
    """Paired rounds of GET /workflows on the tracing server and the untraced one."""
    clients_: list[httpx.AsyncClient] = []
    for server in (on, off):
        token = await access_token(server.base, client_id, secret)
        headers = {"Authorization": f"Bearer {token}"}
        clients_.append(httpx.AsyncClient(base_url=server.base, headers=headers, timeout=60))
    traced, untraced = clients_
    try:
        for http in clients_:  # steady state: the traced server's ring of traces is full
            await _round(http, RING_FILL)
        ratios: list[float] = []
        on_medians: list[float] = []
        off_medians: list[float] = []
        for i in range(counts.rounds):
            if i % 2 == 0:
                with_tracing = await _round(traced, counts.per_round)
                without = await _round(untraced, counts.per_round)
            else:
                without = await _round(untraced, counts.per_round)
                with_tracing = await _round(traced, counts.per_round)
            on_medians.append(with_tracing)
            off_medians.append(without)
            ratios.append(with_tracing / without)
    finally:
        for http in clients_:
            await http.aclose()
    return {
        "tracing_on_p50_ms": statistics.median(on_medians) * 1000,
        "tracing_off_p50_ms": statistics.median(off_medians) * 1000,
        "tracing_overhead_pct": (statistics.median(ratios) - 1) * 100,
    }


async def run_backend(backend: str, counts: Counts, pg_admin: str, log: Any) -> dict[str, float]:
    async with bench_database(backend, pg_admin, "mesh") as (workdir, url):
        results: dict[str, float] = {}
        client_id, secret = await prepare(url)
        server = ServerProcess(url, workdir)
        log(f"{backend}: server pid {server.proc.pid}")
        try:
            token = await access_token(server.base, client_id, secret)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=60) as http:
                # Runs first: the ingest figures' jobs (of the same job types) are left
                # queued for nobody, so the pool never has them to work through.
                pool = Workers(
                    WORKER_PROCESSES,
                    server.grpc_target,
                    server.base + "/oauth/token",
                    client_id,
                    secret,
                    WORKER_CONCURRENCY,
                )
                try:
                    results |= await workflow_runs(http, url, counts.runs)
                finally:
                    pool.stop()
                log(f"{backend}: workflow runs done")
                results |= await ingest_latency(http, counts.ingests)
                results["ingest_per_s"] = await ingest_throughput(
                    server.base, token, counts.ingest_burst
                )
                log(f"{backend}: ingest done")
        finally:
            server.stop()
        # Two fresh servers, alike but for tracing (neither has served anything yet).
        traced = ServerProcess(url, workdir)
        try:
            untraced = ServerProcess(url, workdir, env={"ORCHESTRATOR_TRACING_ENABLED": "false"})
            try:
                results |= await tracing_overhead(traced, untraced, client_id, secret, counts)
            finally:
                untraced.stop()
        finally:
            traced.stop()
        log(f"{backend}: tracing overhead done")
    return results


def main() -> None:
    cli(
        __doc__ or "",
        run_backend,
        quick=QUICK,
        full=FULL,
        targets=TARGETS,
        quick_help="smaller counts",
    )


if __name__ == "__main__":
    main()
