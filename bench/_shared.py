"""What the benchmarks share: `orchestrator serve` in a child process on free loopback
ports, its CPU and memory from /proc, latency percentiles, a fresh database per backend,
the figures table and the command line of the per-backend benchmarks.

Imported by the scripts as `_shared` (a script's own folder is the first entry of its
`sys.path`); the leading underscore keeps `make bench` from running it as a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
C = TypeVar("C")  # a benchmark's counts (its quick or full run)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p50_p99(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds of `samples` in seconds (inclusive quantiles)."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


class ServerProcess:
    """`orchestrator serve` of this checkout in a child process, on `db_url`, HTTP and
    gRPC on free loopback ports, logging warnings only; `env` adds or overrides
    variables. Waits (up to 60 s) until HTTP answers; raises RuntimeError if it never
    does or the process exits. `profile` names a file cProfile writes at exit."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        profile: str = "",
    ) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        environment = {
            **os.environ,
            "ORCHESTRATOR_DATABASE_URL": db_url,
            "PORT": str(self.http_port),
            "GRPC_PORT": str(self.grpc_port),
            "LOG_LEVEL": "WARNING",
            # the code of this checkout, whatever the virtualenv's install points at
            "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "gen"))),
            **(env or {}),
        }
        exe = Path(sys.executable).with_name("orchestrator")
        command = [str(exe), "serve"]
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, *command]
        self.proc = subprocess.Popen(command, cwd=workdir, env=environment)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.base}/.well-known/jwks.json", timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        """VmHWM (the resident set's high-water mark) of the server process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@asynccontextmanager
async def bench_database(backend: str, pg_admin: str, name: str) -> AsyncIterator[tuple[Path, str]]:
    """A work folder and a fresh database for one backend's run: a SQLite file in the
    folder, or a new PostgreSQL database `bench_<name>_<random>` created through
    `pg_admin` (an asyncpg URL of the server's maintenance database). Both are removed
    (the database dropped WITH (FORCE)) when the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{backend}-"))
    pg_name = ""
    try:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        else:
            pg_name = f"bench_{name}_{uuid.uuid4().hex[:10]}"
            await _admin(pg_admin, f'CREATE DATABASE "{pg_name}"')
            url = (
                sa.make_url(pg_admin)
                .set(drivername="postgresql+asyncpg", database=pg_name)
                .render_as_string(hide_password=False)
            )
        yield workdir, url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if pg_name:
            await _admin(pg_admin, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


async def _admin(pg_admin: str, statement: str) -> None:
    admin = await asyncpg.connect(pg_admin)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def figures_table(
    results: Mapping[str, Mapping[str, float]], targets: Mapping[str, str], width: int = 26
) -> str:
    """One row per figure of `targets` that every backend measured: the figure, each
    backend's value, the target; then the machine's load average."""
    backends = list(results)
    lines = [
        f"{'figure':<{width}}" + "".join(f"{b:>12}" for b in backends) + "   target",
        "-" * (width + 12 * len(backends) + 24),
    ]
    for key, target in targets.items():
        if any(key not in results[b] for b in backends):
            continue
        cells = "".join(f"{results[b][key]:>12.1f}" for b in backends)
        lines.append(f"{key:<{width}}{cells}   {target}")
    load = os.getloadavg()
    lines.append(f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs)")
    return "\n".join(lines)


def cli(
    doc: str,
    run_backend: Callable[[str, C, str, Callable[[str], None]], Awaitable[dict[str, float]]],
    *,
    quick: C,
    full: C,
    targets: Mapping[str, str],
    quick_help: str = "smaller counts",
) -> None:
    """The command line the per-backend benchmarks share: `--quick` (counts `quick`
    instead of `full`), `--json` (one object of per-backend figures on stdout, progress
    on stderr), `--backend`, `--pg-url` (env ORCHESTRATOR_BENCH_PG_URL); runs
    `run_backend(backend, counts, pg_url, log)` per backend and prints the table."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--backend", choices=["both", "sqlite", "postgres"], default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "ORCHESTRATOR_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server to create the bench database on (env ORCHESTRATOR_BENCH_PG_URL)",
    )
    args = parser.parse_args()

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    async def run() -> dict[str, dict[str, float]]:
        backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
        return {
            b: await run_backend(b, quick if args.quick else full, args.pg_url, log)
            for b in backends
        }

    started = time.perf_counter()
    results = asyncio.run(run())
    log(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps({b: {k: round(v, 3) for k, v in f.items()} for b, f in results.items()}))
    else:
        print(figures_table(results, targets))
