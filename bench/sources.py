"""Throughput of one page of job sources, REST vs gRPC, on SQLite (issue 2 baseline).

Seeds 10,000 sources (fixed seed) into a fresh SQLite file, starts `orchestrator
serve` in a child process (so the load generator does not share its event loop),
then drives `GET /jobengine/sources?limit=50` and the same `ListSources` call over
gRPC, 50 requests in flight each, and prints requests/s with p50/p99 latency. Both
carry a real bearer token of a client bound to the tenant, as production calls do.

    .venv/bin/python bench/sources.py [--requests 3000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import sqlalchemy as sa

from orchestrator.jobengine.v1 import sources_service_pb2 as pb
from orchestrator.jobengine.v1 import sources_service_pb2_grpc as pb_grpc
from server.identity.authorization_server import clients
from server.storage.db import Database
from server.storage.tables import SourceRow, TenantRow, table_of

TENANT = "bench"
SEED = 20261123


async def seed(url: str, count: int) -> tuple[str, str]:
    """The sources, plus a client bound to the tenant; returns its id and secret."""
    rng = random.Random(SEED)
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        if await session.get(TenantRow, TENANT) is None:
            session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
    created = await clients.create_client(db, scopes=["orch:read"], tenant=TENANT)
    now = datetime.now(UTC)
    rows = [
        {
            "source_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "tenant_id": TENANT,
            "project_id": None,
            "name": f"source-{rng.getrandbits(48):012x}-{i}",
            "source_type": rng.choice(["scheduler", "webhook", "manual"]),
            "enabled": rng.random() > 0.2,
            "paused": False,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(table_of(SourceRow)), rows)
    await db.dispose()
    return created.client.client_id, created.client_secret


def start_server(db_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    http_port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": db_url,
        "PORT": str(http_port),
        "GRPC_PORT": str(grpc_port),
        "LOG_LEVEL": "WARNING",
    }
    exe = Path(sys.executable).with_name("orchestrator")
    proc = subprocess.Popen([str(exe), "serve"], cwd=workdir, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{http_port}/jobengine/sources", timeout=1)
            return proc, http_port, grpc_port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(call: Callable[[], Awaitable[None]], total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def report(label: str, latencies: list[float], elapsed: float) -> float:
    rps = len(latencies) / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{label:<28} {rps:8.0f} req/s   p50 {cuts[49] * 1000:7.2f} ms   "
        f"p99 {cuts[98] * 1000:7.2f} ms   ({len(latencies)} requests)"
    )
    return rps


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    db_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    credentials = await seed(db_url, args.sources)
    proc, http_port, grpc_port = start_server(db_url, workdir)
    try:
        issued = await asyncio.to_thread(
            httpx.post,
            f"http://127.0.0.1:{http_port}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=credentials,
        )
        issued.raise_for_status()
        authorization = f"Bearer {issued.json()['access_token']}"
        headers = {"X-Stella-Tenant": TENANT, "Authorization": authorization}
        limits = httpx.Limits(max_connections=args.concurrency)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}", limits=limits, timeout=30
        ) as client:

            async def rest_call() -> None:
                response = await client.get("/jobengine/sources?limit=50", headers=headers)
                assert response.status_code == 200 and len(response.json()["items"]) == 50

            await drive(rest_call, 200, args.concurrency)  # warm-up
            start = time.perf_counter()
            rest = await drive(rest_call, args.requests, args.concurrency)
            rest_rps = report("REST GET /jobengine/sources", rest, time.perf_counter() - start)

        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.SourcesServiceStub(channel)
            metadata = (("x-stella-tenant", TENANT), ("authorization", authorization))

            async def grpc_call() -> None:
                response = await stub.ListSources(
                    pb.ListSourcesRequest(limit=50), metadata=metadata
                )
                assert len(response.items) == 50

            await drive(grpc_call, 200, args.concurrency)
            start = time.perf_counter()
            grpc_lat = await drive(grpc_call, args.requests, args.concurrency)
            grpc_rps = report("gRPC ListSources", grpc_lat, time.perf_counter() - start)
        print(f"REST / gRPC throughput ratio: {rest_rps / grpc_rps:.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
