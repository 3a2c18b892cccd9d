"""Wake-ups for long-polling workers (DESIGN §9): "work of (tenant, job type) arrived".

`Wakeups.notify(tenant_id, job_type, count)` is called after a commit that made
`count` jobs leasable now (enqueue, a lease expired, a slot released); it wakes this
process's waiting `LeaseJobs` calls at once (an asyncio signal: all SQLite needs, one
process) and, on PostgreSQL, tells the other replicas with `NOTIFY` on the channel
`orchestrator_jobs`, sent from one dedicated connection that also `LISTEN`s. Sends
are debounced per (tenant, job type): notifications that arrive while a send is in
flight are coalesced into the next one (their counts added), a single `SELECT
pg_notify(...) FROM unnest(...)`, so a burst of enqueues costs one round trip, not one
each. A lost notification (the listener reconnecting) only delays a worker until its
poll fallback (`domain/leasing.py` POLL_INTERVAL_S).

No thundering herd: a notification wakes at most `count` waiters of its key, the
longest waiting first (Graphile Worker "nudges" one idle worker per job, River one
fetch per notification), not every waiter, each of which would run a lease statement
to find the one job. This process's idle waiters come first: only the jobs they
cannot take are announced to the other replicas (the `NOTIFY` round trip and its
delivery back to our own listener were ~1.2 ms of a 6 ms enqueue->lease with a
waiter here, in bench/jobs.py), and a replica whose waiters took every job sends
nothing. A waiter woken here that will not query hands its wake-up to another
waiter here or, with none idle, to the other replicas; a waiter whose lease fills
its maxJobs passes the wake-up on to the next waiter here (`Watch.pass_on`: there
may be more), so a notification that under-counts (an expiry sweep, a resumed quota)
still reaches as many waiters as there is work, one lease at a time.

Payload: "{sender}:{count}\\t{tenant}\\t{job type}" (PostgreSQL caps a payload at 8000
bytes; ours stay under 300); a replica ignores its own. The count rides in the first
field so that a replica of the previous release, which splits "{sender}\\t{tenant}\\t
{job type}", still reads tenant and job type (and wakes all its waiters) during a
rolling upgrade; its own payloads, without a count, count one here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa

log = logging.getLogger("orchestrator.wakeups")

CHANNEL = "orchestrator_jobs"
RECONNECT_DELAY_S = 1.0

Key = tuple[str, str]


class Watch:
    """One waiter's subscription to some keys; `wait` returns early when a notification
    of any of them chose this waiter."""

    def __init__(self, owner: Wakeups, keys: Sequence[Key]) -> None:
        self._owner = owner
        self._keys = tuple(keys)
        self.event = asyncio.Event()
        for key in self._keys:  # insertion order: the longest waiting is woken first
            owner._waiters.setdefault(key, {})[self] = None

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def woken(self) -> bool:
        return self.event.is_set()

    def pass_on(self, *, across_replicas: bool = False) -> None:
        """Wake one other waiter of each of this watch's keys: the caller leased all it
        asked for, so more work may be waiting (this process only: the notification
        that announced the work reached the other replicas already, counted), or
        `across_replicas`, it was woken and will not query (its wake-up may have been the
        only one sent for a job: with no other waiter here, another replica's gets it)."""
        for key in self._keys:
            if not self._owner._wake_local(key, 1) and across_replicas:
                self._owner._notify_others(key, 1)

    def close(self) -> None:
        for key in self._keys:
            waiters = self._owner._waiters.get(key)
            if waiters is not None:
                waiters.pop(self, None)
                if not waiters:
                    del self._owner._waiters[key]


class Wakeups:
    """The process's wake-up hub; `start()` opens the PostgreSQL listener (no-op on
    SQLite), `close()` ends it."""

    def __init__(self, database_url: str | sa.URL | None = None) -> None:
        url = sa.make_url(database_url) if database_url is not None else None
        self._dsn: str | None = None
        if url is not None and url.get_backend_name() == "postgresql":
            self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._waiters: dict[Key, dict[Watch, None]] = {}
        self._sender = uuid.uuid4().hex[:12]
        self._conn: asyncpg.Connection | None = None
        self._pending: dict[Key, int] = {}
        self._sending: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    def watch(self, tenant_id: str, job_types: Sequence[str]) -> Watch:
        return Watch(self, [(tenant_id, job_type) for job_type in job_types])

    def notify(self, tenant_id: str, job_type: str, count: int = 1) -> None:
        """`count` jobs of `job_type` in `tenant_id` are leasable now; call after the
        commit. Wakes at most `count` waiters: idle ones here first, the rest on the
        other replicas."""
        if count < 1:
            return
        key = (tenant_id, job_type)
        self._notify_others(key, count - self._wake_local(key, count))

    def _notify_others(self, key: Key, count: int) -> None:
        """Tell the other replicas that `count` jobs of `key` wait for a waiter there."""
        if count < 1 or self._dsn is None or self._closed:
            return
        self._pending[key] = self._pending.get(key, 0) + count
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send())

    def _wake_local(self, key: Key, count: int | None) -> int:
        """Wake `count` waiters of `key` not woken yet, longest waiting first (None:
        all of them); how many were woken."""
        woken = 0
        for watch in self._waiters.get(key, {}):
            if count is not None and woken >= count:
                break
            if not watch.event.is_set():
                watch.event.set()
                woken += 1
        return woken

    def server_pid(self) -> int | None:
        """The PostgreSQL backend of the listener, None while it is not connected."""
        return None if self._conn is None else self._conn.get_server_pid()

    async def start(self) -> None:
        if self._dsn is not None:
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("job wake-up listener not connected (%s); polling meanwhile", exc)
                self._schedule_reconnect()

    async def close(self) -> None:
        self._closed = True
        for task in (self._sending, self._reconnecting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                conn.terminate()

    async def _connect(self) -> None:
        assert self._dsn is not None
        conn = await asyncpg.connect(self._dsn, timeout=10)
        await conn.add_listener(CHANNEL, self._received)
        conn.add_termination_listener(self._lost)
        self._conn = conn

    def _lost(self, _conn: Any) -> None:
        self._conn = None
        if not self._closed:
            log.warning("job wake-up listener lost its connection; reconnecting")
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed and self._conn is None:
            await asyncio.sleep(RECONNECT_DELAY_S)
            try:
                await self._connect()
            except Exception as exc:  # still down: try again after the delay
                log.debug("wake-up listener reconnect failed: %s", exc)
        # Work may have arrived unannounced meanwhile: wake everyone to look.
        for key in list(self._waiters):
            self._wake_local(key, None)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        first, _, rest = payload.partition("\t")
        sender, _, counted = first.partition(":")
        if sender == self._sender:
            return
        tenant_id, _, job_type = rest.partition("\t")
        count = int(counted) if counted.isdigit() else 1
        self._wake_local((tenant_id, job_type), max(count, 1))

    async def _send(self) -> None:
        while self._pending and not self._closed:
            conn = self._conn
            if conn is None:
                self._pending.clear()  # the others poll meanwhile
                return
            payloads = [f"{self._sender}:{n}\t{t}\t{j}" for (t, j), n in self._pending.items()]
            self._pending.clear()
            try:
                await conn.execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads
                )
            except Exception as exc:  # the connection broke: the others poll meanwhile
                log.debug("wake-up notify failed: %s", exc)
                return
