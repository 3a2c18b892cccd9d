"""The DPoP `jti` replay cache every replica shares (RFC 9449 §11.1).

A proof may be used once. `DpopVerifier.first_use` hashes the proof key's thumbprint
and `jti` into a key and asks a `ReplayStore` to record it until the proof's `iat`
window closes; the store answers, atomically and in one round trip, whether that
was the first use anywhere:

- `SqlReplayStore`: an INSERT the primary key decides (`storage/repositories/guards.py`),
  on the database the replicas share (SQLite for one process, PostgreSQL for several);
- `RedisReplayStore`: `SET key 1 NX PX ttl` when `REDIS_HOST` is set.

Times come from the identity wall clock (`Clocks.wall`), so replicas must keep their
clocks in sync to well under the 60 s window, as the `iat` check already requires.
Errors of the store propagate: a proof is never accepted unchecked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

from server.storage.repositories.guards import SqlGuards

REDIS_PREFIX = "orchestrator:dpop-jti:"


class ReplayStore(Protocol):
    async def first_use(self, key: str, *, expires_at: float) -> bool:
        """Record `key` until `expires_at` (epoch seconds); False when it is already
        recorded and has not expired. Atomic across every process using the store."""
        ...


class SqlReplayStore:
    def __init__(self, guards: SqlGuards, *, clock: Callable[[], float] = time.time) -> None:
        self._guards = guards
        self._clock = clock

    async def first_use(self, key: str, *, expires_at: float) -> bool:
        return await self._guards.first_use(
            key, expires_at_ms=math.ceil(expires_at * 1000), now_ms=int(self._clock() * 1000)
        )


class RedisReplayStore:
    def __init__(
        self,
        redis: Redis,
        *,
        clock: Callable[[], float] = time.time,
        prefix: str = REDIS_PREFIX,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix

    async def first_use(self, key: str, *, expires_at: float) -> bool:
        # Redis expires the key itself; at least 1 ms, as PX refuses 0.
        ttl_ms = max(1, math.ceil((expires_at - self._clock()) * 1000))
        stored = await self._redis.set(self._prefix + key, b"1", nx=True, px=ttl_ms)
        return bool(stored)
