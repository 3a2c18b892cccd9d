"""Pruning: keeps the hot `jobs` table small (DESIGN §9; issue 9 point 2).

Finished jobs (succeeded, canceled, dead-lettered: `finished_at` set) whose
`finished_at` is older than the retention (JOB_RETENTION_SECONDS, 7 days by
default) are deleted with their events, at most `batch_size` jobs per transaction,
pausing between batches so the work never holds locks or the writer long:

- PostgreSQL: `DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE
  finished_at < :cutoff ORDER BY finished_at LIMIT :n FOR UPDATE SKIP LOCKED)
  RETURNING tenant_id, job_id` over `ix_jobs_finished`, so replicas pruning at
  once split the rows instead of waiting on each other; SQLite serialises writers.
- The batch's events go in the same transaction (`tenant_id = :t AND subject IN
  (...)` over `ix_events_tenant_subject_id`): a job's history is a view of its
  events and goes with it; the operator audit trail is what outlives a job.
- `quota_minutes` rows older than the last-hour window (60 minutes) are deleted on
  each pass too (QuotaRow: "deleted by the pruner").

`JobPruner` runs passes in the background every interval; `prune_once` is one pass
(tests call it with a time of their choosing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.domain.job_states import FINISHED
from server.domain.resources import JOB
from server.storage.db import Database
from server.storage.tables import EventRow, JobRow, QuotaMinuteRow, table_of

log = logging.getLogger("orchestrator.pruning")

_jobs = table_of(JobRow)
_events = table_of(EventRow)
_minutes = table_of(QuotaMinuteRow)
_FINISHED = sorted(status.value for status in FINISHED)
LAST_HOUR_MINUTES = 60


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one pass deleted: jobs per batch (in order), their events, quota minutes."""

    batches: list[int] = field(default_factory=list)
    events: int = 0
    quota_minutes: int = 0

    @property
    def jobs(self) -> int:
        return sum(self.batches)


async def prune_batch(db: Database, *, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """Delete up to `batch_size` jobs finished before `cutoff`, and their events, in one
    transaction; (jobs, events) deleted."""
    chosen = (
        sa.select(_jobs.c.job_id)
        .where(
            _jobs.c.finished_at.is_not(None),
            _jobs.c.finished_at < cutoff,
            _jobs.c.status.in_(_FINISHED),
        )
        .order_by(_jobs.c.finished_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    statement = (
        sa.delete(_jobs)
        .where(_jobs.c.job_id.in_(chosen.scalar_subquery()))
        .returning(_jobs.c.tenant_id, _jobs.c.job_id)
    )
    async with db.transaction() as session:
        conn = await session.connection()
        deleted = (await conn.execute(statement)).all()
        subjects: dict[str, list[str]] = defaultdict(list)
        for row in deleted:
            subjects[row.tenant_id].append(JOB.name(row.job_id))
        events = 0
        for tenant_id, names in subjects.items():
            result = await conn.execute(
                sa.delete(_events).where(
                    _events.c.tenant_id == tenant_id, _events.c.subject.in_(names)
                )
            )
            events += result.rowcount
    return len(deleted), events


async def prune_quota_minutes(db: Database, *, now: datetime) -> int:
    """Delete per-minute lease counts that left the last-hour window; how many."""
    current = int(now.timestamp()) // 60
    async with db.transaction() as session:
        result = await (await session.connection()).execute(
            sa.delete(_minutes).where(_minutes.c.minute <= current - LAST_HOUR_MINUTES)
        )
    return int(result.rowcount)


async def prune_once(
    db: Database,
    *,
    now: datetime,
    retention: timedelta,
    batch_size: int,
    pause: float = 0.0,
) -> PruneReport:
    """One pass: batches until one comes back short, `pause` seconds between them."""
    cutoff = now - retention
    batches: list[int] = []
    events = 0
    while True:
        jobs, batch_events = await prune_batch(db, cutoff=cutoff, batch_size=batch_size)
        if jobs:
            batches.append(jobs)
            events += batch_events
        if jobs < batch_size:
            break
        await asyncio.sleep(pause)
    minutes = await prune_quota_minutes(db, now=now)
    return PruneReport(batches=batches, events=events, quota_minutes=minutes)


class JobPruner:
    """Runs `prune_once` every `interval` seconds in the background until `stop()`.
    A failing pass (e.g. the database restarting) is logged and retried next time."""

    def __init__(
        self,
        db: Database,
        *,
        wall: Callable[[], float],
        retention: timedelta,
        batch_size: int,
        pause: float,
        interval: float,
    ) -> None:
        self._db = db
        self._wall = wall
        self._retention = retention
        self._batch_size = batch_size
        self._pause = pause
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="job-pruner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                report = await prune_once(
                    self._db,
                    now=datetime.fromtimestamp(self._wall(), UTC),
                    retention=self._retention,
                    batch_size=self._batch_size,
                    pause=self._pause,
                )
                if report.jobs or report.quota_minutes:
                    log.info(
                        "pruned %d finished jobs in %d batches, %d events, %d quota minutes",
                        report.jobs,
                        len(report.batches),
                        report.events,
                        report.quota_minutes,
                    )
            except Exception:  # the next pass tries again
                log.warning("pruning pass failed", exc_info=True)
            await asyncio.sleep(self._interval)
