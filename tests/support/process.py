"""`orchestrator serve` as a real child process, for tests of what only a process shows:
the address it derives its issuer from, and several replicas on one database.

`ServedProcess.start` runs the installed command with the given environment, reads its
output until the start-up line (and, with `--dev` on an empty database, the dev
client's credentials) and hands back the ports, the issuer and the credentials.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
START_UP = re.compile(
    r"serving gRPC on (?P<host>[^ ]+):(?P<grpc>\d+), HTTP on [^ ]+:(?P<http>\d+); "
    r"issuer (?P<issuer>\S+) \((?P<source>[^)]*)\)"
)
START_UP_SECONDS = 30.0


def base_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a test server: SQLite under `tmp_path`, ports 0, no config
    file, and no ORCHESTRATOR_PUBLIC_URL or REDIS_HOST from the caller's environment."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("ORCHESTRATOR_PUBLIC_URL", "REDIS_HOST", "REDIS_PORT")
    }
    env.update(
        {
            "ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'o.db'}",
            "PORT": "0",
            "GRPC_PORT": "0",
            "ORCHESTRATOR_CONFIG_FILE": os.devnull,  # no config file: an empty one
        }
    )
    env.update(overrides)
    return env


@dataclass
class ServedProcess:
    proc: subprocess.Popen[str]
    grpc_port: int
    http_port: int
    issuer: str
    issuer_source: str  # "ORCHESTRATOR_PUBLIC_URL" or the note that it was derived
    lines: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        """Where this process's HTTP listens (not necessarily its issuer)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The dev client's id and secret, as `serve --dev` prints them once."""
        return _credentials(self.lines)

    @classmethod
    def start(cls, env: dict[str, str], *, cwd: Path, dev: bool = True) -> ServedProcess:
        """Start and wait for the start-up line; `dev` needs an empty database (it waits
        for the dev client's credentials), so further replicas start with dev=False."""
        command = [ORCHESTRATOR, "serve", *(["--dev"] if dev else [])]
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + START_UP_SECONDS
        match: re.Match[str] | None = None
        # With --dev (on an empty database) the credentials follow the start-up line.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = match or START_UP.search(line)
            if match and (not dev or _credentials(lines)):
                break
        if match is None or (dev and not _credentials(lines)):
            proc.kill()
            proc.wait()
            raise AssertionError("server did not start:\n" + "".join(lines))
        return cls(
            proc=proc,
            grpc_port=int(match["grpc"]),
            http_port=int(match["http"]),
            issuer=match["issuer"],
            issuer_source=match["source"],
            lines=lines,
        )

    def stop(self) -> int:
        """SIGTERM, then the exit status (killed after 20 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.lines.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()
        return self.proc.returncode


def _credentials(lines: list[str]) -> tuple[str, str] | None:
    found = dict(
        line.strip().split("=", 1)
        for line in lines
        if line.strip().startswith(("client_id=", "client_secret="))
    )
    if "client_id" in found and "client_secret" in found:
        return found["client_id"], found["client_secret"]
    return None
