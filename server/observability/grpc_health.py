"""The standard gRPC health service (grpc.health.v1) following readiness.

`HealthReporter` re-evaluates readiness every `interval_s` seconds and sets every
served service name (and "", the server as a whole) SERVING when ready, NOT_SERVING
when not, so `Check` answers and `Watch` streams what /ready answers. It starts
NOT_SERVING, and `stop()` sets NOT_SERVING for good (`enter_graceful_shutdown`)
before the server drains, so load balancers stop sending calls first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from grpc_health.v1 import health, health_pb2

log = logging.getLogger("orchestrator.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """`ready()` says whether the server is ready now (it must not raise)."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        names: Sequence[str],
        ready: Callable[[], Awaitable[bool]],
        *,
        interval_s: float,
    ) -> None:
        self.servicer = servicer
        self._names = ("", *names)
        self._ready = ready
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.serving: bool | None = None  # the status last set; None before the first

    async def set_all(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in self._names:
            await self.servicer.set(name, status)
        if serving != self.serving and self.serving is not None:
            log.log(
                logging.INFO if serving else logging.WARNING,
                "gRPC health: %s",
                "SERVING" if serving else "NOT_SERVING",
            )
        self.serving = serving

    async def refresh(self) -> bool:
        """Evaluate readiness now and publish it; returns it."""
        serving = await self._ready()
        await self.set_all(serving)
        return serving

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="grpc-health")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.servicer.enter_graceful_shutdown()
        self.serving = False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except Exception:  # the next round tries again
                log.warning("gRPC health refresh failed", exc_info=True)
