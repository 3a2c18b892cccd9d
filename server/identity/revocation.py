"""Revoked tokens and disabled clients, as every replica sees them within a second.

Revoking (RFC 7009) writes the token's `jti` with its expiry; the row lives until
the token would have expired anyway. `RevocationList` is the in-memory view the
verifier checks: when it is older than `max_age` (0.5 s) the next check reloads
it in one query, so a revocation or a disabled client takes effect on every
replica within `max_age` plus one query. The reload reads the whole (small) set of
unexpired revocations rather than a delta: commit order across replicas is not
insertion order, and a full read cannot miss a late commit. Idle replicas do not
query at all; a busy one queries about twice a second, single-flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from server.storage.db import Database
from server.storage.repositories import identity as repo
from server.storage.tables import RevokedTokenRow, utcnow

PRUNE_AFTER = timedelta(hours=1)
MAX_AGE_SECONDS = 0.5  # how stale the in-memory view may get before a check reloads it


async def revoke_token(db: Database, *, jti: str, client_id: str, expires_at: int) -> None:
    """Record a revocation (idempotent) and prune long-expired ones, in one transaction."""
    try:
        async with db.transaction() as session:
            if not await repo.is_revoked(session, jti):
                session.add(
                    RevokedTokenRow(
                        jti=jti,
                        client_id=client_id,
                        expires_at=datetime.fromtimestamp(expires_at, UTC),
                    )
                )
            await repo.prune_revocations(session, before=utcnow() - PRUNE_AFTER)
    except sa.exc.IntegrityError:
        pass  # a concurrent revocation of the same token won the race: same outcome


class RevocationList:
    def __init__(
        self,
        db: Database,
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_age` in seconds of `clock`, a monotonic clock (seconds, any origin)."""
        self._db = db
        self._max_age = max_age
        self._clock = clock
        self._revoked: frozenset[str] = frozenset()
        self._disabled: frozenset[str] = frozenset()
        self._local: dict[str, float] = {}  # revoked here -> when; kept until a reload sees it
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh_if_stale(self) -> None:
        if self._clock() - self._loaded_at < self._max_age:
            return
        async with self._lock:
            if self._clock() - self._loaded_at < self._max_age:
                return  # another task reloaded while this one waited
            started = self._clock()
            async with self._db.read() as conn:
                revoked, disabled = await repo.revocation_state(conn, now=utcnow())
            self._revoked = frozenset(revoked)
            self._disabled = frozenset(disabled)
            self._local = {jti: at for jti, at in self._local.items() if at >= started}
            self._loaded_at = started

    def is_revoked(self, jti: str) -> bool:
        return jti in self._revoked or jti in self._local

    def is_disabled(self, client_id: str) -> bool:
        return client_id in self._disabled

    def add(self, jti: str) -> None:
        """A revocation made by this process counts at once, before the next reload."""
        self._local[jti] = self._clock()

    def invalidate(self) -> None:
        """Force a reload on the next check (after a client was disabled here)."""
        self._loaded_at = float("-inf")
