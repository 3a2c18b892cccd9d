"""Real processes for the concurrency and fault tests (issue 9 points 6-7): server
processes (`orchestrator serve`) whose output is drained by a thread so a busy server
never blocks on a full pipe, worker processes (`tests.support.worker_process`), their
records read back as a `Ledger`, and the checks that every job succeeded exactly once.

"Exactly once" is judged from three sources that must agree:
- the rows: every job `succeeded`, its final fencing token (lease id, attempt);
- the event log: per job exactly one `job.succeeded`, naming that token, and each
  `job.leased` closed (lease expired, failed, succeeded) before the next one opens,
  with attempts 1, 2, 3... (never two live leases of one job);
- the workers' records: no job has two accepted completions, an accepted completion
  carries the row's token, and every job's token was sent by a worker. A completion
  whose answer never arrived (its worker was killed, or the server died after the
  commit and the retry was refused as already succeeded) is "unacknowledged": the
  caller says which workers or windows may leave those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import sqlalchemy as sa

from clients.auth import ClientCredentials
from tests.support.process import ServedProcess

REPO = Path(__file__).parents[2]
FAILED_PRECONDITION = 9  # google.rpc.Code
OK = 0
Token = tuple[str, str, int]  # job id, lease id, attempt


def plain_dsn(url: str) -> str:
    """An asyncpg DSN from a SQLAlchemy URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Server:
    """One `orchestrator serve` process; its output collected by a thread."""

    def __init__(self, env: dict[str, str], cwd: Path, *, dev: bool) -> None:
        self.env = env
        self.cwd = cwd
        self.served = ServedProcess.start(env, cwd=cwd, dev=dev)
        self.lines = list(self.served.lines)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        stdout = self.served.proc.stdout
        assert stdout is not None
        for line in stdout:
            self.lines.append(line)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.served.grpc_port}"

    @property
    def token_url(self) -> str:
        return f"{self.served.base}/oauth/token"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.served.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL: no drain, nothing flushed."""
        self.served.proc.kill()
        return self._wait()

    def stop(self) -> int:
        """SIGTERM: the server drains and exits (0 when clean)."""
        if self.alive():
            self.served.proc.send_signal(signal.SIGTERM)
        return self._wait()

    def _wait(self) -> int:
        try:
            code = self.served.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.served.proc.kill()
            code = self.served.proc.wait()
        self._reader.join(timeout=10)
        if self.served.proc.stdout is not None:
            self.served.proc.stdout.close()
        # Kept for a look after a failure (pytest keeps the last runs' tmp_path).
        (self.cwd / f"server-{self.served.proc.pid}.log").write_text(self.output)
        return code


@dataclass
class WorkerProcess:
    worker_id: str
    record: Path
    log: Path
    proc: asyncio.subprocess.Process

    @classmethod
    async def start(
        cls,
        directory: Path,
        worker_id: str,
        *,
        target: str,
        credentials: ClientCredentials,
        job_types: list[str],
        concurrency: int = 8,
        lease_duration: float = 2.0,
        wait_timeout: float = 1.0,
        work_seconds: float = 0.0,
    ) -> WorkerProcess:
        record = directory / f"{worker_id}.record"
        log = directory / f"{worker_id}.log"
        args = [
            "-m",
            "tests.support.worker_process",
            "--target",
            target,
            "--token-url",
            credentials.token_url,
            "--client-id",
            credentials.client_id,
            # one `=` word: a secret may start with "-" (older ones could), which
            # argparse would read as an option rather than the value
            f"--client-secret={credentials.client_secret}",
            "--record",
            str(record),
            "--worker-id",
            worker_id,
            "--concurrency",
            str(concurrency),
            "--lease-duration",
            str(lease_duration),
            "--wait-timeout",
            str(wait_timeout),
            "--work-seconds",
            str(work_seconds),
        ]
        for job_type in job_types:
            args += ["--job-type", job_type]
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
        return cls(worker_id, record, log, proc)

    async def kill(self) -> int:
        self.proc.kill()
        return await self.proc.wait()

    async def freeze(self, timeout: float = 10.0) -> None:
        """SIGSTOP, and wait until the kernel shows the process stopped (state `T` in
        /proc/PID/stat), so its record file no longer changes: what it holds can be
        read, then it is killed (SIGKILL ends a stopped process) or thawed."""
        self.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while self._state() not in ("T", "t"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.worker_id} did not stop within {timeout} s")
            await asyncio.sleep(0.001)

    def _state(self) -> str:
        """The process state letter: the first field after the parenthesised command
        name in /proc/PID/stat (proc(5))."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def unreported_leases(self) -> set[str]:
        """Job ids of the leases this worker recorded (`L`) and sent no completion for
        (`S`), matched by fencing token: the jobs its handlers hold."""
        sent = {tuple(line[:3]) for line in self.lines("S")}
        return {line[0] for line in self.lines("L") if tuple(line[:3]) not in sent}

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: the worker drains (finishes or fails what it holds) and exits."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def lines(self, kind: str) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [
            line.split()[1:]
            for line in self.record.read_text().splitlines()
            if line.startswith(kind + " ")
        ]

    @property
    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@dataclass
class Ledger:
    """What the workers wrote down, by worker id."""

    leases: dict[str, list[Token]] = field(default_factory=lambda: defaultdict(list))
    sent: dict[str, set[Token]] = field(default_factory=lambda: defaultdict(set))
    answers: list[tuple[str, Token, int]] = field(default_factory=list)  # worker, token, code
    call_errors: Counter[str] = field(default_factory=Counter)  # whole-call failure codes
    holds: dict[str, list[Token]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, workers: list[WorkerProcess]) -> Ledger:
        ledger = cls()
        for worker in workers:
            w = worker.worker_id
            for job, lease, attempt in worker.lines("L"):
                ledger.leases[w].append((job, lease, int(attempt)))
            for job, lease, attempt in worker.lines("S"):
                ledger.sent[w].add((job, lease, int(attempt)))
            for job, lease, attempt, code in worker.lines("A"):
                ledger.answers.append((w, (job, lease, int(attempt)), int(code)))
            for _job, _lease, _attempt, name in worker.lines("E"):
                ledger.call_errors[name] += 1
            for job, lease, attempt in worker.lines("H"):
                ledger.holds[w].append((job, lease, int(attempt)))
        return ledger

    def accepted(self) -> dict[str, list[tuple[str, Token]]]:
        """Accepted completions by job id: (worker, token)."""
        found: dict[str, list[tuple[str, Token]]] = defaultdict(list)
        for worker, token, code in self.answers:
            if code == OK:
                found[token[0]].append((worker, token))
        return found

    def refusal_codes(self) -> Counter[int]:
        return Counter(code for _w, _t, code in self.answers if code != OK)


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    status: str
    lease_id: str | None
    attempts: int
    events: tuple[tuple[str, dict[str, object]], ...]


async def job_records(database_url: str, tenant_id: str) -> dict[str, JobRecord]:
    """Every job of `tenant_id` with its events (oldest first), read from the database."""
    conn = await asyncpg.connect(plain_dsn(database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT job_id, status, lease_id, attempts FROM jobs WHERE tenant_id = $1", tenant_id
        )
        events: dict[str, list[tuple[str, dict[str, object]]]] = defaultdict(list)
        for event in await conn.fetch(
            "SELECT subject, type, data FROM events WHERE tenant_id = $1 "
            "AND subject LIKE 'jobs/%' ORDER BY event_id",
            tenant_id,
        ):
            events[event["subject"].removeprefix("jobs/")].append(
                (event["type"], json.loads(event["data"]))
            )
    finally:
        await conn.close()
    return {
        row["job_id"]: JobRecord(
            row["job_id"],
            row["status"],
            row["lease_id"],
            row["attempts"],
            tuple(events[row["job_id"]]),
        )
        for row in rows
    }


LEASE_ENDS = ("job.lease_expired", "job.failed", "job.succeeded", "job.dead_lettered")


def lease_history_problems(record: JobRecord) -> list[str]:
    """Where a job's event history shows two live leases at once, an attempt number
    out of sequence, or a success that is not the row's token (empty: none)."""
    problems: list[str] = []
    open_lease: dict[str, object] | None = None
    attempts = 0
    succeeded = 0
    for kind, data in record.events:
        if kind == "job.leased":
            if open_lease is not None:
                problems.append(f"leased again while lease {open_lease['leaseId']} was live")
            attempts += 1
            if data.get("attempt") != attempts:
                problems.append(f"lease attempt {data.get('attempt')}, expected {attempts}")
            open_lease = data
        elif kind in LEASE_ENDS:
            if open_lease is None or data.get("leaseId") != open_lease["leaseId"]:
                problems.append(f"{kind} of lease {data.get('leaseId')} that was not live")
            open_lease = None
            if kind == "job.succeeded":
                succeeded += 1
                if (data.get("leaseId"), data.get("attempt")) != (record.lease_id, record.attempts):
                    problems.append("the success names another token than the row")
    if succeeded != 1:
        problems.append(f"{succeeded} job.succeeded events")
    return problems


@dataclass
class Verdict:
    """The exactly-once counts: jobs whose accepted completion a worker saw, and jobs
    completed by a call whose answer never reached its worker (by worker id)."""

    acknowledged: int
    unacknowledged: Counter[str]


def verify_exactly_once(
    records: dict[str, JobRecord], ledger: Ledger, job_ids: set[str]
) -> Verdict:
    """Assert every job of `job_ids` succeeded exactly once (see the module docstring)."""
    assert set(records) == job_ids
    statuses = Counter(r.status for r in records.values())
    assert statuses == {"succeeded": len(job_ids)}, statuses
    problems = {
        job_id: found
        for job_id, record in records.items()
        if (found := lease_history_problems(record))
    }
    assert problems == {}, dict(list(problems.items())[:10])
    # No attempt of a job was granted twice, no lease id handed out twice.
    grants = [token for tokens in ledger.leases.values() for token in tokens]
    attempts = Counter((job_id, attempt) for job_id, _lease, attempt in grants)
    assert [grant for grant, n in attempts.items() if n > 1] == []
    assert len({lease for _job, lease, _attempt in grants}) == len(grants)
    accepted = ledger.accepted()
    twice = {job_id: found for job_id, found in accepted.items() if len(found) > 1}
    assert twice == {}, twice
    senders: dict[Token, set[str]] = defaultdict(set)
    for worker, tokens in ledger.sent.items():
        for token in tokens:
            senders[token].add(worker)
    acknowledged = 0
    unacknowledged: Counter[str] = Counter()
    for job_id, record in records.items():
        final: Token = (job_id, record.lease_id or "", record.attempts)
        if job_id in accepted:
            assert accepted[job_id][0][1] == final, (job_id, accepted[job_id], final)
            acknowledged += 1
            continue
        sent_by = senders.get(final)
        assert sent_by, f"job {job_id}: no worker sent its completion {final}"
        (worker,) = sent_by
        unacknowledged[worker] += 1
    return Verdict(acknowledged, unacknowledged)


async def wait_for(condition: object, what: str, *, timeout: float, interval: float = 0.1) -> None:
    """Await `condition()` (an async callable returning bool) until true."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(interval)


async def count_status(database_url: str, tenant_id: str, status: str) -> int:
    conn = await asyncpg.connect(plain_dsn(database_url), timeout=10)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND status = $2", tenant_id, status
        )
    finally:
        await conn.close()
    return int(value)


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """A new database on the shared server (its SQLAlchemy asyncpg URL), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = os.environ.get("ORCHESTRATOR_TEST_PG_URL", PG_ADMIN_URL)
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield (
            sa.make_url(admin_url)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
