"""The Orchestra process engine at speed (issue 11 point 7), on SQLite and PostgreSQL,
over REST and in-process.

For each backend, on a fresh database (a temporary SQLite file; a new PostgreSQL
database on the shared server, dropped at the end), with real bearer tokens of a
client bound to the bench tenant whose role holds `access orchestra api`:

REST (`orchestrator serve` in a child process; this process sends over one
keep-alive HTTP/1.1 connection, one call in flight, plain httpx so the figures are
the server's and not a client library's):

- start: `POST /orchestra-api/process/approve/start` (start -> user task), p50/p99;
- signal round trip: `POST /orchestra-api/token/{id}/signal` of the parked user task,
  which moves the token on until the instance completes (start -> review -> done),
  p50/p99 of the call;
- service-task round trip: token -> job -> lease by a worker of the worker SDK
  (`clients.worker.Worker` in a child process, long-polling, outcomes sent at once)
  -> complete -> the engine, woken by the job-ending hint, moves the token on; read
  from the engine's own events of each instance (`orchestra.token.waiting` on the
  service task to `orchestra.token.entered` on the end node, both stamped by the
  server's clock), instances of `task` (start -> service task -> done) started one
  every START_GAP_S so no client polls the server meanwhile; p50/p99;
- instances/s: STARTERS concurrent start loops create instances of `task` while a
  pool of WORKER_PROCESSES worker processes (WORKER_CONCURRENCY handlers each, the
  SDK's default batching of outcomes) completes their jobs; from the first start to
  the moment the database counts every instance completed;
- list: `GET /orchestra-api/instances?definition_id=bulk_a&status=running` with the
  tenant holding 20,000 instances (seeded straight into the database) of which that
  filter matches 10,000: the whole bare array of 10,000, median of the fetches.

In-process (`server.app.Application` in this process, the child server stopped, so
SQLite has one writer process): start and signal p50/p99 through
`clients.orchestra.LocalOrchestraClient`, i.e. the same interceptor chain without a
socket or JSON.

Targets (the issue's): start p50 <= 5 ms and p99 <= 25 ms over REST on SQLite; signal
p50 <= 5 ms; service-task round trip p50 <= 15 ms; >= 250 instances/s with one service
task on PostgreSQL. One table, or `--json` for one object keyed by backend with
`start_rest_p50_ms`, `start_rest_p99_ms`, `signal_rest_p50_ms`, `signal_rest_p99_ms`,
`service_task_p50_ms`, `service_task_p99_ms`, `instances_per_s`,
`list_10k_filtered_ms`, `start_inprocess_p50_ms`, `start_inprocess_p99_ms`,
`signal_inprocess_p50_ms`, `signal_inprocess_p99_ms`. `--quick` is the same with
smaller counts (under 90 s for both backends on the 2-core box).

    .venv/bin/python bench/orchestra.py [--quick] [--json] [--backend sqlite|postgres]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import signal
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _shared import ServerProcess, bench_database, cli, p50_p99

from clients.auth import ClientCredentials
from clients.orchestra import LocalOrchestraClient
from clients.worker import LeasedJob, Worker
from server.app import Application
from server.config import Settings
from server.domain.context import CallContext
from server.domain.orchestra.definitions import put_definition
from server.domain.orchestra.validation import parse_document
from server.identity.authorization_server import clients
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.storage.db import Database
from server.storage.repositories.orchestra import SqlOrchestraStore
from server.storage.store import SqlStore
from server.storage.tables import EventRow, OrchestraInstanceRow, TenantRow, table_of

TENANT = "bench"
JOB_TYPE = "bench.orchestra"
LIST_MATCHING = 10_000  # instances the list filter matches (and as many it does not)
STARTERS = 16
WORKER_PROCESSES = 2
WORKER_CONCURRENCY = 32
WARMUP = 20
START_GAP_S = 0.02  # between service-task starts of the round-trip figure
DEFINITIONS: dict[str, dict[str, Any]] = {
    "approve": {
        "id": "approve",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "review", "type": "user_task"},
            {"id": "done", "type": "end"},
        ],
        "flows": [{"from": "start", "to": "review"}, {"from": "review", "to": "done"}],
    },
    "task": {
        "id": "task",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "work", "type": "service_task", "job_type": JOB_TYPE},
            {"id": "done", "type": "end"},
        ],
        "flows": [{"from": "start", "to": "work"}, {"from": "work", "to": "done"}],
    },
}
TARGETS = {  # the targets, for the table
    "start_rest_p50_ms": "<= 5 (SQLite)",
    "start_rest_p99_ms": "<= 25 (SQLite)",
    "signal_rest_p50_ms": "<= 5",
    "signal_rest_p99_ms": "",
    "service_task_p50_ms": "<= 15",
    "service_task_p99_ms": "",
    "instances_per_s": ">= 250 (PostgreSQL)",
    "list_10k_filtered_ms": "",
    "start_inprocess_p50_ms": "",
    "start_inprocess_p99_ms": "",
    "signal_inprocess_p50_ms": "",
    "signal_inprocess_p99_ms": "",
}


@dataclass(frozen=True)
class Counts:
    starts: int  # timed REST starts (each then signalled: the signal samples)
    service_tasks: int  # timed service-task round trips
    instances: int  # instances of the throughput run
    list_fetches: int
    inprocess: int  # timed in-process starts (and signals)


FULL = Counts(starts=2000, service_tasks=500, instances=4000, list_fetches=15, inprocess=2000)
QUICK = Counts(starts=250, service_tasks=100, instances=600, list_fetches=3, inprocess=250)


# --- set-up -----------------------------------------------------------------------------


async def prepare(url: str) -> tuple[str, str]:
    """Schema, tenant, the two definitions (stored as `orchestrator definitions load`
    stores them), 2 x LIST_MATCHING instances for the list (one half `bulk_a` running,
    the other `bulk_b` completed), and a client bound to the tenant with orch:operate
    (for the workers) and `access orchestra api`: its id and secret."""
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
    call = CallContext(
        method="/orchestrator.orchestra.v1.DefinitionsService/PutDefinition",
        trace_id=uuid.uuid4().hex,
        actor="bench",
        authenticated=True,
        operator_reason="bench/orchestra.py",
    )
    store = SqlOrchestraStore(SqlStore(db))
    for document in DEFINITIONS.values():
        await put_definition(store, call, parse_document(document), now=datetime.now(UTC))
    base = datetime.now(UTC) - timedelta(days=1)
    rows = [
        {
            "instance_id": str(uuid.uuid4()),
            "tenant_id": TENANT,
            "definition_id": "bulk_a" if i % 2 == 0 else "bulk_b",
            "definition_version": 1,
            "status": "running" if i % 2 == 0 else "completed",
            "variables": "{}",
            "created_at": base + timedelta(milliseconds=i),
            "updated_at": base + timedelta(milliseconds=i),
        }
        for i in range(2 * LIST_MATCHING)
    ]
    async with db.engine.begin() as conn:
        for at in range(0, len(rows), 2000):
            await conn.execute(sa.insert(table_of(OrchestraInstanceRow)), rows[at : at + 2000])
    created = await clients.create_client(
        db,
        scopes=["orch:read", "orch:operate"],
        tenant=TENANT,
        permissions=[ORCHESTRA_PERMISSION],
    )
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


# --- workers (child processes) ------------------------------------------------------------


def worker_process(
    ready: Any,
    target: str,
    token_url: str,
    client_id: str,
    secret: str,
    concurrency: int,
    linger: float,
) -> None:
    """A worker of the SDK that completes every job at once with {"ok": true}; sets
    `ready` once it holds a token and is about to poll; drains and exits on SIGTERM."""

    async def handler(job: LeasedJob) -> object:
        return {"ok": True}

    # A heartbeat that crosses its job's completion is told the lease is gone; the SDK
    # logs that at WARNING. Harmless here, and thousands of lines in a throughput run.
    logging.getLogger("clients.worker").setLevel(logging.ERROR)

    async def work() -> None:
        credentials = ClientCredentials(token_url, client_id, secret, scopes=["orch:operate"])
        await credentials.authorization()
        worker = Worker.connect(
            target,
            job_types=[JOB_TYPE],
            handler=handler,
            credentials=credentials,
            concurrency=concurrency,
            flush_interval=linger,
            grace_period=5,
        )
        ready.set()
        await worker.run(handle_signals=True)

    asyncio.run(work())


class Workers:
    """`count` worker processes; returns once each is ready to poll (a process
    spawn and its imports take seconds on this box: not the path being measured)."""

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


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return time.perf_counter() - started, result


def _ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def rest_latencies(http: httpx.AsyncClient, counts: Counts) -> dict[str, float]:
    """Start and signal p50/p99 over REST, one call in flight."""

    async def start() -> str:
        body = _ok(await http.post("/orchestra-api/process/approve/start", json={}), 201)
        return str(body["instance_id"])

    async def parked(instance_id: str) -> str:
        state = _ok(await http.get(f"/orchestra-api/instance/{instance_id}"))
        return str(state["tokens"][0]["id"])

    for _ in range(WARMUP):
        token = await parked(await start())
        _ok(await http.post(f"/orchestra-api/token/{token}/signal"))
    starts: list[float] = []
    instances: list[str] = []
    for _ in range(counts.starts):
        elapsed, instance_id = await _timed(start)
        starts.append(elapsed)
        instances.append(instance_id)
    signals: list[float] = []
    for instance_id in instances:
        path = f"/orchestra-api/token/{await parked(instance_id)}/signal"
        started = time.perf_counter()
        response = await http.post(path)
        signals.append(time.perf_counter() - started)
        _ok(response)
    final = _ok(await http.get(f"/orchestra-api/instance/{instances[-1]}"))
    if final["status"] != "completed":
        raise RuntimeError(f"a signalled instance is {final['status']}")
    (start_p50, start_p99), (signal_p50, signal_p99) = p50_p99(starts), p50_p99(signals)
    return {
        "start_rest_p50_ms": start_p50,
        "start_rest_p99_ms": start_p99,
        "signal_rest_p50_ms": signal_p50,
        "signal_rest_p99_ms": signal_p99,
    }


async def _completed(db: Database, definition_id: str) -> int:
    instances = table_of(OrchestraInstanceRow)
    query = sa.select(sa.func.count()).where(
        instances.c.tenant_id == TENANT,
        instances.c.definition_id == definition_id,
        instances.c.status == "completed",
    )
    async with db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _wait_completed(db: Database, definition_id: str, total: int, seconds: float) -> None:
    """Until the database counts `total` completed instances of `definition_id`,
    looking every 20 ms (a count on an index: no load worth the name)."""
    deadline = time.perf_counter() + seconds
    while (done := await _completed(db, definition_id)) < total:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{done} of {total} instances completed within {seconds:g} s")
        await asyncio.sleep(0.02)


async def service_task_round_trips(
    http: httpx.AsyncClient, url: str, count: int
) -> dict[str, float]:
    """Token -> job -> lease -> complete -> token advances, p50/p99 in ms, from the
    engine's own events of each instance: `orchestra.token.waiting` (the token parked
    on the service task, its job enqueued, in the start's transaction) to the
    `orchestra.token.entered` of the end node (the step that took the job's ending
    and moved the token on). Both are stamped by the server's clock at the start of
    their transactions. Instances are started one every START_GAP_S (open loop, light
    load) so nothing but the path itself is measured: no client polls the server."""
    started: list[str] = []
    for _ in range(WARMUP + count):
        body = _ok(await http.post("/orchestra-api/process/task/start", json={}), 201)
        started.append(str(body["instance_id"]))
        await asyncio.sleep(START_GAP_S)
    db = Database(url)
    events = table_of(EventRow)
    try:
        await _wait_completed(db, "task", len(started), 60)
        subjects = [f"orchestra-instances/{i}" for i in started[WARMUP:]]
        query = sa.select(events.c.subject, events.c.type, events.c.data, events.c.time).where(
            events.c.subject.in_(subjects),
            events.c.type.in_(("orchestra.token.waiting", "orchestra.token.entered")),
        )
        async with db.read() as conn:
            rows = (await conn.execute(query)).all()
    finally:
        await db.dispose()
    waiting: dict[str, datetime] = {}
    advanced: dict[str, datetime] = {}
    for row in rows:
        if row.type == "orchestra.token.waiting":
            waiting[row.subject] = row.time
        elif json.loads(row.data).get("node_id") == "done":
            advanced[row.subject] = row.time
    samples = [(advanced[s] - waiting[s]).total_seconds() for s in subjects]
    p50, p99 = p50_p99(samples)
    return {"service_task_p50_ms": p50, "service_task_p99_ms": p99}


async def throughput(base: str, token: str, url: str, total: int) -> float:
    """Instances/s of `task` with STARTERS start loops and the worker pool running:
    from the first start until the database counts every instance completed."""
    db = Database(url)
    before = await _completed(db, "task")
    remaining = iter(range(total))
    headers = {"Authorization": f"Bearer {token}"}

    async def starter() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            for _ in remaining:
                _ok(await http.post("/orchestra-api/process/task/start", json={}), 201)

    started = time.perf_counter()
    starters = asyncio.gather(*(starter() for _ in range(STARTERS)))
    try:
        await _wait_completed(db, "task", before + total, 300)
        elapsed = time.perf_counter() - started
        await starters
    finally:
        await db.dispose()
    return total / elapsed


async def list_filtered(http: httpx.AsyncClient, fetches: int) -> float:
    """Median ms of the filtered list answering LIST_MATCHING instances."""
    params = {"definition_id": "bulk_a", "status": "running"}
    samples: list[float] = []
    for _ in range(fetches + 1):
        elapsed, response = await _timed(
            lambda: http.get("/orchestra-api/instances", params=params)
        )
        found = _ok(response)
        if len(found) != LIST_MATCHING:
            raise RuntimeError(f"the filtered list has {len(found)} items")
        samples.append(elapsed)
    return statistics.median(samples[1:]) * 1000  # the first fetch warms caches


async def inprocess_latencies(
    url: str, workdir: Path, client_id: str, secret: str, n: int
) -> dict[str, float]:
    """Start and signal p50/p99 through LocalOrchestraClient in this process."""
    app = Application(
        Settings(host="127.0.0.1", port=0, grpc_port=0, database_url=url, log_level="WARNING")
    )
    await app.start()
    try:
        token = await access_token(f"http://127.0.0.1:{app.http_port}", client_id, secret)
        orchestra = LocalOrchestraClient(app.gateway.upstream, access_token=token)
        for _ in range(WARMUP):
            instance_id = await orchestra.start_process("approve")
            await orchestra.signal_token((await orchestra.get_instance(instance_id)).tokens[0].id)
        starts: list[float] = []
        instances: list[str] = []
        for _ in range(n):
            elapsed, instance_id = await _timed(lambda: orchestra.start_process("approve"))
            starts.append(elapsed)
            instances.append(instance_id)
        signals: list[float] = []
        for instance_id in instances:
            token_id = (await orchestra.get_instance(instance_id)).tokens[0].id
            started = time.perf_counter()
            await orchestra.signal_token(token_id)
            signals.append(time.perf_counter() - started)
        await orchestra.close()
    finally:
        await app.stop(grace=1)
    (start_p50, start_p99), (signal_p50, signal_p99) = p50_p99(starts), p50_p99(signals)
    return {
        "start_inprocess_p50_ms": start_p50,
        "start_inprocess_p99_ms": start_p99,
        "signal_inprocess_p50_ms": signal_p50,
        "signal_inprocess_p99_ms": signal_p99,
    }


async def run_backend(backend: str, counts: Counts, pg_admin: str, log: Any) -> dict[str, float]:
    async with bench_database(backend, pg_admin, "orchestra") as (workdir, url):
        results: dict[str, float] = {}
        client_id, secret = await prepare(url)
        server = ServerProcess(url, workdir)
        base = f"http://127.0.0.1:{server.http_port}"
        log(f"{backend}: server pid {server.proc.pid}")
        try:
            token = await access_token(base, client_id, secret)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
                results |= await rest_latencies(http, counts)
                log(f"{backend}: start/signal over REST done")
                results["list_10k_filtered_ms"] = await list_filtered(http, counts.list_fetches)
                worker_args = (f"127.0.0.1:{server.grpc_port}", base + "/oauth/token", client_id)
                one = Workers(1, *worker_args, secret, 8, 0.0)
                try:
                    results |= await service_task_round_trips(http, url, counts.service_tasks)
                finally:
                    one.stop()
                log(f"{backend}: service-task round trips done")
            pool = Workers(WORKER_PROCESSES, *worker_args, secret, WORKER_CONCURRENCY, 0.05)
            try:
                results["instances_per_s"] = await throughput(base, token, url, counts.instances)
            finally:
                pool.stop()
            log(f"{backend}: throughput done")
        finally:
            server.stop()
        results |= await inprocess_latencies(url, workdir, client_id, secret, counts.inprocess)
        log(f"{backend}: in-process done")
    return results


def main() -> None:
    cli(
        __doc__ or "",
        run_backend,
        quick=QUICK,
        full=FULL,
        targets=TARGETS,
        quick_help="smaller counts (under 90 s)",
    )


if __name__ == "__main__":
    main()
