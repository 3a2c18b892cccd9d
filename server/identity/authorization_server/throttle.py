"""Slow down secret guessing: an exponential lockout per client id, shared by replicas.

After `free_failures` consecutive failed authentications of one client id, that id
is locked for `base_delay` seconds from its last failure, doubling with every further
failure up to `max_delay`. While locked, attempts are refused without checking the
secret, so a guesser gains nothing by hammering. A success resets the id; so does a
quiet `window` (seconds since the last failure, at least `max_delay`).

The counts live where every replica sees them (`FailureCounts`): the database
(`SqlFailureCounts`, an atomic upsert per failure) or Redis when `REDIS_HOST` is set
(`RedisFailureCounts`, HINCRBY + PEXPIRE in one MULTI). N replicas therefore grant
a guesser the attempts of one. Costs per token request: one read while checking the
lock, one write on failure, one delete on success. Time is the identity wall clock
(`Clocks.wall`), comparable between replicas, unlike a monotonic clock.

Unknown ids are throttled exactly like known ones, so the throttle reveals nothing
about which ids exist. The flip side of any per-id lockout: someone who knows a
client id can lock it out, for at most `max_delay` seconds at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

from server.storage.repositories.guards import SqlGuards

REDIS_PREFIX = "orchestrator:auth-failures:"
_MAX_DOUBLINGS = 64  # 2**64 * base_delay is past any max_delay; avoids float overflow


class FailureCounts(Protocol):
    async def failures(self, client_id: str, *, now: float) -> tuple[int, float] | None:
        """(consecutive failures, time of the last one) while the window runs, else None."""
        ...

    async def add_failure(self, client_id: str, *, now: float, window: float) -> int:
        """Count one failure at `now`, atomically; the window restarts. The new count."""
        ...

    async def clear(self, client_id: str) -> None: ...


class FailureThrottle:
    def __init__(
        self,
        counts: FailureCounts,
        *,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        window: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window < max_delay:
            raise ValueError("the window must outlast the longest lockout")
        self._counts = counts
        self._free = free_failures
        self._base = base_delay
        self._max = max_delay
        self._window = window
        self._clock = clock

    async def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        now = self._clock()
        found = await self._counts.failures(key, now=now)
        if found is None:
            return None
        failures, last_failure = found
        over = failures - self._free
        if over < 0:
            return None
        delay = min(self._base * 2.0 ** min(over, _MAX_DOUBLINGS), self._max)
        left = last_failure + delay - now
        return left if left > 0 else None

    async def failed(self, key: str) -> None:
        await self._counts.add_failure(key, now=self._clock(), window=self._window)

    async def succeeded(self, key: str) -> None:
        await self._counts.clear(key)


class SqlFailureCounts:
    def __init__(self, guards: SqlGuards) -> None:
        self._guards = guards

    async def failures(self, client_id: str, *, now: float) -> tuple[int, float] | None:
        found = await self._guards.failures(client_id, now_ms=_ms(now))
        return None if found is None else (found[0], found[1] / 1000)

    async def add_failure(self, client_id: str, *, now: float, window: float) -> int:
        return await self._guards.add_failure(
            client_id, now_ms=_ms(now), window_ms=math.ceil(window * 1000)
        )

    async def clear(self, client_id: str) -> None:
        await self._guards.clear_failures(client_id)


class RedisFailureCounts:
    """One hash per client id (`failures`, `last` in epoch ms) that Redis expires."""

    def __init__(self, redis: Redis, *, prefix: str = REDIS_PREFIX) -> None:
        self._redis = redis
        self._prefix = prefix

    async def failures(self, client_id: str, *, now: float) -> tuple[int, float] | None:
        failures, last = await self._redis.hmget(self._prefix + client_id, ["failures", "last"])
        if failures is None or last is None:
            return None
        return int(failures), int(last) / 1000

    async def add_failure(self, client_id: str, *, now: float, window: float) -> int:
        key = self._prefix + client_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "failures", 1)
            pipe.hset(key, "last", _ms(now))
            pipe.pexpire(key, math.ceil(window * 1000))
            count, _, _ = await pipe.execute()
        return int(count)

    async def clear(self, client_id: str) -> None:
        await self._redis.delete(self._prefix + client_id)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
