"""What authentication costs: one GET through the in-process REST gateway, with and
without the token check, in one run (issue 4 §9; target: auth costs <= 10 % of
throughput).

The request is `GET /jobengine/sources/{sourceId}` of one seeded source: a primary-key
read with a small body, so the fixed per-request cost of checking a token (parse,
ES256 signature, claims, revocation list) is the largest share it can be. A page of
50 (`?limit=50`) spends most of its time encoding 50 items and would hide that cost.

Two server processes run on one SQLite file (in a temp dir), started from this
script so both are the same code:

- `auth`: `server.app.Application`, exactly as `orchestrator serve` builds it;
- `noauth`: the same Application with the `Authentication` stage removed from its
  interceptor chain (a monkeypatch in this script's child process only, see
  `_drop_authentication`). Everything else (tracing, errors, tenancy, audit
  stages, gateway, storage) is identical.

Both get `X-Stella-Tenant`; `auth` also `Authorization: Bearer <token>` from the real
token endpoint. Load comes from raw HTTP/1.1 keep-alive sockets in this (parent)
process, 50 requests in flight; the two sides alternate in rounds (A B B A ...) after
a warm-up, so drift on this noisy 2-core machine hits both alike.

    .venv/bin/python bench/auth.py [--seconds 6] [--rounds 3] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from server.app import Application
from server.config import Settings
from server.identity.authorization_server import clients
from server.interceptors.authentication import Authentication
from server.storage.db import Database
from server.storage.tables import SourceRow, TenantRow, table_of

TENANT = "bench"
SOURCES = 1000
SIDES = ("auth", "noauth")


# --- the servers (child processes) ------------------------------------------------------------


def _drop_authentication() -> None:
    """BENCH ONLY: make `Application.start` build its interceptor chain (gRPC server and
    in-process upstream share it) without the Authentication stage. The policy cannot
    say "no authentication" for this method without editing the protos, so the stage
    is filtered out of what `server.app.chain_stages` returns, and nothing else changes."""
    import server.app as app_module

    names = vars(app_module)  # server.app's own binding of the name, which start() calls
    stages = names["chain_stages"]

    def stages_without_auth(*args: Any) -> tuple[Any, ...]:
        return tuple(s for s in stages(*args) if not isinstance(s, Authentication))

    names["chain_stages"] = stages_without_auth


async def serve(side: str, database_url: str, port: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    if side == "noauth":
        _drop_authentication()
    app = Application(
        Settings(
            host="127.0.0.1",
            port=port,
            grpc_port=0,
            database_url=database_url,
            log_level="WARNING",
            shutdown_grace_seconds=1,
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    await stop.wait()
    await app.stop(grace=1)


# --- set-up (parent) ----------------------------------------------------------------------------


async def seed(database_url: str) -> tuple[str, str, str]:
    """Sources, the tenant and an orch:read client; (a source id, client id, secret)."""
    db = Database(database_url)
    await db.migrate()
    now = datetime.now(UTC)
    rows = [
        {
            "source_id": str(uuid.UUID(int=i + 1)),
            "tenant_id": TENANT,
            "project_id": None,
            "name": f"source-{i:05d}",
            "source_type": "webhook",
            "enabled": True,
            "paused": False,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(SOURCES)
    ]
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(table_of(SourceRow)), rows)
    async with db.transaction() as session:
        session.add(TenantRow(tenant_id=TENANT, display_name=TENANT))
    created = await clients.create_client(db, scopes=["orch:read"], tenant=TENANT)
    await db.dispose()
    return rows[SOURCES // 2]["source_id"], created.client.client_id, created.client_secret  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(side: str, database_url: str, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--serve", side, "--database-url", database_url]
    return subprocess.Popen(
        [*args, "--port", str(port)], env={**os.environ, "LOG_LEVEL": "WARNING"}
    )


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


# --- load (parent) -------------------------------------------------------------------------------


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


async def _connection(
    port: int, request: bytes, stop: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200 "):
                errors.append(head.split(b"\r\n", 1)[0].decode())
    finally:
        writer.close()


async def load(port: int, request: bytes, seconds: float, concurrency: int) -> Sample:
    latencies: list[float] = []
    errors: list[str] = []
    began = time.perf_counter()
    stop = began + seconds
    await asyncio.gather(
        *(_connection(port, request, stop, latencies, errors) for _ in range(concurrency))
    )
    if errors:
        raise RuntimeError(f"{len(errors)} failed responses, e.g. {errors[0]}")
    return Sample(latencies, time.perf_counter() - began)


def raw_get(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def percentile(latencies: list[float], pct: int) -> float:
    return statistics.quantiles(latencies, n=100)[pct - 1] * 1000


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    database_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    source_id, client_id, secret = await seed(database_url)
    ports = {side: free_port() for side in SIDES}
    procs = []
    try:
        for side in SIDES:  # one after the other: each migrates the (shared) file on start
            procs.append(spawn(side, database_url, ports[side]))
            wait_up(ports[side])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['auth']}") as http:
            response = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "orch:read"},
                auth=(client_id, secret),
            )
            response.raise_for_status()
            token = response.json()["access_token"]
            path = f"/jobengine/sources/{source_id}"
            tenant = {"X-Stella-Tenant": TENANT}
            # Each side is what it claims: auth refuses a call without a token, noauth not.
            refused = await http.get(path, headers=tenant)
            assert refused.status_code == 401, refused.text
            unchecked = await http.get(f"http://127.0.0.1:{ports['noauth']}{path}", headers=tenant)
            assert unchecked.status_code == 200, unchecked.text
        requests = {
            "auth": raw_get(ports["auth"], path, {**tenant, "Authorization": f"Bearer {token}"}),
            "noauth": raw_get(ports["noauth"], path, tenant),
        }
        for side in SIDES:
            await load(ports[side], requests[side], 1.0, args.concurrency)  # warm-up

        samples = {side: Sample() for side in SIDES}
        per_round = args.seconds / args.rounds
        for index in range(args.rounds):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for side in order:
                sample = await load(ports[side], requests[side], per_round, args.concurrency)
                samples[side].latencies += sample.latencies
                samples[side].seconds += sample.seconds

        print(
            f"GET {path} via the in-process gateway, SQLite, {args.concurrency} in flight, "
            f"{args.seconds:g} s per side in {args.rounds} alternating rounds"
        )
        for side, label in (("noauth", "without authentication"), ("auth", "with Bearer token")):
            sample = samples[side]
            print(
                f"  {label:<24} {sample.rps:7.0f} req/s   p50 "
                f"{percentile(sample.latencies, 50):6.2f} ms   p99 "
                f"{percentile(sample.latencies, 99):6.2f} ms   ({len(sample.latencies)} requests)"
            )
        ratio = samples["auth"].rps / samples["noauth"].rps
        print(
            f"  with / without: {ratio:.2f} of the throughput: authentication costs "
            f"{(1 - ratio) * 100:.1f} % (target <= 10 %)"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.database_url, args.port))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
