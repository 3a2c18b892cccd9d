"""A private PostgreSQL cluster for tests that stop and start the database itself
(issue 9 point 7): `initdb` + `pg_ctl` from the binaries installed on the machine,
on a free loopback port, data in a temporary directory, trust authentication. The
shared server other tests use (127.0.0.1:5432) is never touched.

initdb and the postmaster refuse to run as root; as root the cluster's commands run
as the `postgres` OS user (`runuser`) in a directory that user owns, made under /tmp
(pytest's own temporary directories are private to root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

PG_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"
COMMAND_SECONDS = 60.0


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (/usr/lib/postgresql/N/bin)."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise AssertionError(f"no PostgreSQL binaries (initdb) under {PG_ROOT}")
    return found[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivateCluster:
    """One initdb'ed cluster: `start`, `stop`, `restart`, `url`; `destroy` stops it and
    removes its directory."""

    root: Path
    port: int
    bindir: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The asyncpg URL of its `postgres` database (user postgres, trust)."""
        return sa.URL.create(
            "postgresql+asyncpg",
            username="postgres",
            host="127.0.0.1",
            port=self.port,
            database="postgres",
        ).render_as_string(hide_password=False)

    @classmethod
    def create(cls) -> PrivateCluster:
        """initdb a new cluster on a free port and start it."""
        root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
        cluster = cls(root=root, port=free_port(), bindir=bin_dir())
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster._run(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        cluster.start()
        return cluster

    def start(self) -> None:
        # fsync off: a stopped or crashed postmaster leaves its writes in the OS cache,
        # which is all these tests crash. synchronous_commit stays on: with it off an
        # acknowledged commit still in the WAL buffers dies with an immediate stop.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: "fast" (sessions are terminated, clean shutdown) or "immediate" (no
        shutdown checkpoint, crash recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        status = self._run("pg_ctl", "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *command]
        done = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        if check and done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}{log[-4000:]}"
            )
        return done
