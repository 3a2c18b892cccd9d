"""The scheduler loop (issue 10 point 5; DESIGN §9): every replica runs one.

Each pass is `schedules.fire_due` at the engine's time: due schedules are claimed with
`FOR UPDATE SKIP LOCKED`, so replicas running passes at once split them and no tick is
enqueued twice (the jobs' event-time idempotency keys hold even if two passes raced
for one tick). A replica that was down catches up on its first pass by each
schedule's misfire policy. A failing pass (e.g. the database restarting) is logged
and retried after the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from server.config import Settings
from server.domain.jobs import JobLimits
from server.domain.schedules import FireReport, fire_due
from server.domain.units import Store

log = logging.getLogger("orchestrator.scheduler")


class SchedulerLoop:
    """Runs `fire_due` every `interval` seconds until `stop()`; `run_once` is one pass."""

    def __init__(
        self,
        store: Store,
        limits: JobLimits,
        *,
        wall: Callable[[], float],
        interval: float,
        grace: timedelta,
    ) -> None:
        self._store = store
        self._limits = limits
        self._wall = wall
        self._interval = interval
        self._grace = grace
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, wall: Callable[[], float]
    ) -> SchedulerLoop:
        """The loop of a server: SCHEDULER_INTERVAL_SECONDS, SCHEDULE_MISFIRE_GRACE_SECONDS."""
        return cls(
            store,
            JobLimits(payload_max_bytes=settings.job_payload_max_bytes),
            wall=wall,
            interval=settings.scheduler_interval_seconds,
            grace=timedelta(seconds=settings.schedule_misfire_grace_seconds),
        )

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running loop's task (None when stopped): what readiness watches."""
        return self._task

    async def run_once(self) -> FireReport:
        now = datetime.fromtimestamp(self._wall(), UTC)
        return await fire_due(self._store, self._limits, now=now, grace=self._grace)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.enqueued or report.skipped:
                    log.info(
                        "scheduler: %d schedules, %d jobs enqueued, %d skipped their ticks",
                        report.schedules,
                        report.enqueued,
                        report.skipped,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the next pass tries again
                log.warning("scheduler pass failed; retrying", exc_info=True)
            await asyncio.sleep(self._interval)
