"""What the benchmarks share: `orchestrator serve` in a child process on free loopback
ports, its CPU and memory from /proc, and latency percentiles.

Imported by the scripts as `_shared` (a script's own folder is the first entry of its
`sys.path`); the leading underscore keeps `make bench` from running it as a benchmark.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


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
