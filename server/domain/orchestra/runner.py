"""The engine's background loop: due timers and ended jobs (DESIGN §9; issue 11).

One loop per server process (every replica runs one). Each pass fires the timers
that are due, moves the tokens whose service-task job has ended and the sagas whose
compensation job has ended (domain/orchestra/sagas.py), in batches,
then sleeps `interval_s` or until woken: the job engine's ending hints of owned
jobs (`domain/job_endings.py`) wake it at once, and so does a timer due before the
interval ends. A pass woken by hints looks only at the tokens of the hinted jobs
(`ix_orchestra_tokens_job`), so under load its cost follows what ended, not how many
tokens wait; every waiting token is looked at again at least once per `interval_s`
(an ending hinted to another replica, or lost to a restart). Everything a pass does
is claimed (SKIP LOCKED on the instance, a conditional DELETE of the token), so
replicas never move one token twice and a restart loses nothing: the state is in
the tables, not in the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from server.domain.job_endings import JobEnding
from server.domain.orchestra import sagas
from server.domain.orchestra.definitions import ModelCache
from server.domain.orchestra.instances import (
    OWNER_PREFIX,
    OrchestraLimits,
    fire_due_timers,
    reconcile_compensation_endings,
    reconcile_job_endings,
)
from server.domain.orchestra.records import OrchestraStore

log = logging.getLogger("orchestrator.orchestra")
BATCH: Final = 100
_HINTS_MAX: Final = 10_000  # hinted job ids kept between passes
_OWNERS: Final = (f"{OWNER_PREFIX}/", f"{sagas.OWNER_PREFIX}/")


class OrchestraRunner:
    """Moves timer tokens and tokens whose job ended; `wall` is the process clock in
    seconds since the epoch (tests move it)."""

    def __init__(
        self,
        store: OrchestraStore,
        models: ModelCache,
        limits: OrchestraLimits,
        wall: Callable[[], float],
        interval_s: float,
    ) -> None:
        self._store = store
        self._models = models
        self._limits = limits
        self._wall = wall
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._ended: set[str] = set()  # hinted job ids not yet looked at
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._unsubscribe = self._store.base.endings.subscribe(self._on_endings)
            self._task = asyncio.create_task(self._run(), name="orchestra-runner")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Run a pass now (e.g. after a job ended)."""
        self._wake.set()

    def _on_endings(self, endings: Sequence[JobEnding]) -> None:
        owned = [e.job_id for e in endings if (e.owner or "").startswith(_OWNERS)]
        if owned:
            if len(self._ended) < _HINTS_MAX:  # beyond it, the next full pass finds them
                self._ended.update(owned)
            self._wake.set()

    async def run_once(self) -> int:
        """One pass: every due timer and every ended job, in batches; how many tokens
        moved."""
        self._ended.clear()  # this pass looks at every waiting token
        return await self._pass(None)

    async def run_hinted(self, job_ids: Sequence[str]) -> int:
        """One pass over the tokens waiting for `job_ids` (the ending hints), the due
        timers and the ended compensations; how many tokens moved."""
        return await self._pass(job_ids)

    async def _pass(self, job_ids: Sequence[str] | None) -> int:
        total = 0
        while True:
            now = datetime.fromtimestamp(self._wall(), UTC)
            moved = 0
            if job_ids is None or job_ids:
                moved = await reconcile_job_endings(
                    self._store, self._models, self._limits, now=now, limit=BATCH, job_ids=job_ids
                )
            moved += await fire_due_timers(
                self._store, self._models, self._limits, now=now, limit=BATCH
            )
            moved += await reconcile_compensation_endings(
                self._store, self._limits, now=now, limit=BATCH
            )
            total += moved
            if moved < BATCH:
                return total

    async def _run(self) -> None:
        last_full = -math.inf
        while True:
            self._wake.clear()
            try:
                if time.monotonic() - last_full >= self._interval_s:
                    last_full = time.monotonic()
                    await self.run_once()
                else:
                    hinted = sorted(self._ended)
                    self._ended.clear()
                    await self.run_hinted(hinted)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not stop the engine
                log.exception("orchestra engine pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
