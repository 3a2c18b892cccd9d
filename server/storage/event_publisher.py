"""Publishing the events table (DESIGN §9, issue 12): a transactional outbox.

Events are rows committed with the change they record (`repositories/events.py`);
nothing on that path publishes anything. Publishers tail the table instead, so a
publisher that is down delays publication and never loses an event:

- `Tailer` reads events in `event_id` order. Ids are handed out at insert, not at
  commit, so on PostgreSQL a transaction holding a lower id can commit after one
  holding a higher id. The tailer tracks such gaps: an event above a gap is held
  back until the gap fills or the id is known to be a hole (its transaction rolled
  back): on PostgreSQL once every transaction that was running when the gap was
  noticed has ended (`pg_current_snapshot()`: the oldest running xid passed the next
  xid of that moment) and the id is still not visible, usually the next poll; failing
  that after `gap_grace` seconds. Holes are watched a while longer (`hole_keep`); an
  event that commits into one after all is handed out as `late`. SQLite serialises
  writers: an id missing below a committed one is a hole at once (rolled back, or
  deleted by a clear or pruning before the tailer read it; AUTOINCREMENT never reuses
  an id).
- `EventHub` fans the released events out to this process's watchers
  (`domain/event_feed.py` `watch_events`), in id order, one bounded queue each; a
  watcher that falls behind is told to re-read the gap from the table.
- `RedisOutbox` (REDIS_HOST set) adds every event to a Redis stream, starting from a
  cursor stored in `event_cursors` (one write per published batch, never per event),
  so a Redis outage or a restart resumes where publication stopped. Entries are
  keyed by event id: a Lua script adds an event only if its id is not in the
  stream's id set (`{stream}:ids`, a sorted set by id), so retries, replicas
  publishing the same events and replays never add one event twice. The id set is
  trimmed below the oldest stored event (an event that is gone cannot be replayed).
- `EventPublication` is the domain's `EventSubscribers`: both of the above.

Stream entry fields: eventId, tenantId, type, subject, data (JSON object text),
traceId ("" for the server's own actions), time (RFC 3339 UTC). Entries are in
publication order, which is id order except for late events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.domain.errors import Unavailable
from server.domain.event_feed import Delivery, EventQuery
from server.domain.events import EventLike
from server.storage.db import Database
from server.storage.repositories.events import SqlEventFeed, read_cursor, write_cursor

log = logging.getLogger("orchestrator.events")

TAIL_BATCH = 500  # events read per poll
TAIL_IDS_BATCH = 5000  # event ids read per poll when nobody watches
MAX_TRACKED_GAP = 10_000  # ids tracked per jump; a wider jump's rest counts as holes
WATCH_QUEUE = 10_000  # deliveries queued per watcher before it must re-read the table
STREAM_CHUNK = 200  # events per Lua call
TRIM_EVERY_S = 60.0  # how often the stream's id set is trimmed

# KEYS: stream, id set. ARGV: maxlen, then 7 values per event (id, tenant, type,
# subject, data, trace id, time). Returns how many entries it added.
_ADD_SCRIPT = """
local added = 0
for i = 2, #ARGV, 7 do
  if redis.call('ZADD', KEYS[2], 'NX', ARGV[i], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
      'eventId', ARGV[i], 'tenantId', ARGV[i + 1], 'type', ARGV[i + 2],
      'subject', ARGV[i + 3], 'data', ARGV[i + 4], 'traceId', ARGV[i + 5],
      'time', ARGV[i + 6])
    added = added + 1
  end
end
return added
"""


class Tailer:
    """Reads the events table in id order from `start` (exclusive), past commit-order
    gaps (see the module docstring). `released`: every id up to it was handed out or
    is a hole."""

    def __init__(
        self,
        feed: SqlEventFeed,
        *,
        start: int,
        gap_grace: float,
        hole_keep: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self.released = start
        self._top = start  # the highest id read
        self._pending: dict[int, Any] = {}  # read, waiting for a gap below to fill
        self._gaps: dict[int, float] = {}  # missing id -> when first noticed
        # missing id -> the first transaction not yet begun when it was noticed (horizon)
        self._gap_xids: dict[int, int] = {}
        self._holes: dict[int, float] = {}  # given-up id -> when given up
        self._gap_grace = gap_grace
        self._hole_keep = hole_keep
        self._clock = clock

    def low_water(self) -> int:
        """Every id up to this one was handed out or given up for good: a restart can
        resume after it without missing a late event it still watches for."""
        if self._holes:
            return min(self.released, min(self._holes) - 1)
        return self.released

    async def poll(self, *, ids_only: bool = False) -> tuple[list[Any], list[Any], bool]:
        """(events released in id order, late events, whether the read was full).
        `ids_only`: the events read now are tracked by id alone (rows with only
        `event_id`; `EventHub` reads the whole row if it is ever dispatched); late events
        are always whole."""
        now = self._clock()
        limit = TAIL_IDS_BATCH if ids_only else TAIL_BATCH
        rows = await self._feed.after(self._top, limit, ids_only=ids_only)
        if self._in_order(rows):  # the usual case, without a per-event Python loop
            late = await self._read_late()  # before anything moves: a failed read loses nothing
            self._top = self.released = int(rows[-1].event_id)
            self._forget_holes(now)
            return list(rows), late, len(rows) == limit
        noticed: list[int] = []
        for row in rows:
            event_id = int(row.event_id)
            for missing in range(max(self._top + 1, event_id - MAX_TRACKED_GAP), event_id):
                self._gaps[missing] = now
                noticed.append(missing)
            self._pending[event_id] = row
            self._top = event_id
        if self._gaps:
            settled_below, assigned_below = await self._feed.horizon()
            for missing in noticed:
                self._gap_xids[missing] = assigned_below
            filled = await self._feed.with_ids(list(self._gaps), ids_only=ids_only)
            for row in filled:  # read after the horizon
                event_id = int(row.event_id)
                del self._gaps[event_id]
                self._gap_xids.pop(event_id, None)
                self._pending[event_id] = row
        else:
            settled_below = 0
        late = await self._read_late()  # before anything is released: a failed read loses nothing
        released = self._release(now, settled_below)
        self._forget_holes(now)
        return released, late, len(rows) == limit

    def _in_order(self, rows: Sequence[Any]) -> bool:
        """Whether `rows` are the ids right after the last one read, without a gap, and
        nothing is held back or missing below them: then they are released as read,
        without the per-event bookkeeping (~2.5 µs an event when nobody watches: three
        events a job, bench/jobs.py)."""
        if not rows or self._gaps or self._pending or self.released != self._top:
            return False
        first, last = int(rows[0].event_id), int(rows[-1].event_id)
        return first == self._top + 1 and last - first + 1 == len(rows)

    async def _read_late(self) -> list[Any]:
        """The events committed into holes after all (whole rows), each forgotten as a
        hole."""
        late: list[Any] = []
        if self._holes:
            for row in await self._feed.with_ids(list(self._holes)):
                del self._holes[int(row.event_id)]
                late.append(row)
        return late

    def _forget_holes(self, now: float) -> None:
        """Stop watching the holes given up at least `hole_keep` seconds ago."""
        if self._holes:
            for hole, since in list(self._holes.items()):
                if now - since >= self._hole_keep:
                    del self._holes[hole]

    def _release(self, now: float, settled_below: int) -> list[Any]:
        """Hand out pending events in id order; a gap is given up when the transaction
        that took its id must have ended (PostgreSQL: the oldest running xid is past every
        xid assigned when the gap was noticed, and the id is still not visible) or, where
        that cannot be known, after `gap_grace` seconds."""
        released: list[Any] = []
        while self.released < self._top:
            following = self.released + 1
            row = self._pending.pop(following, None)
            if row is not None:
                released.append(row)
            elif following in self._gaps:
                assigned_below = self._gap_xids.get(following)
                ended = assigned_below is not None and settled_below >= assigned_below
                if not ended and now - self._gaps[following] < self._gap_grace:
                    break
                del self._gaps[following]
                self._gap_xids.pop(following, None)
                self._holes[following] = now
            # else: beyond MAX_TRACKED_GAP of a jump, never tracked
            self.released = following
        return released


@dataclass(eq=False)
class _Subscription:
    """One watcher (`domain/event_feed.py` `Subscription`)."""

    hub: EventHub
    query: EventQuery
    origin: int  # the watcher was sent every matching event up to this id
    start: int
    # None wakes the watcher without a delivery (the server is stopping).
    queue: asyncio.Queue[Delivery | None] = field(
        default_factory=lambda: asyncio.Queue(WATCH_QUEUE)
    )
    lagging: bool = False
    position: int = 0
    replayed: set[int] = field(default_factory=set)  # out-of-order ids sent

    def offer(self, delivery: Delivery) -> bool:
        if self.lagging:
            return False
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.lagging = True
            return False
        return True

    def restart(self) -> int:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.lagging = False
        self.start = self.hub.released
        return self.start

    def moved_to(self, position: int) -> None:
        self.position = position

    def was_sent(self, event_id: int) -> bool:
        """Sent, or to be sent in order: every id above `origin` is (in order, from the
        backlog or live), and out-of-order ones are remembered."""
        return event_id > self.origin or event_id in self.replayed

    async def next(self, timeout: float) -> Delivery | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class EventHub:
    """In-process fan-out of committed events to watchers; one tailer per process,
    starting at the newest event when the process starts (watchers resuming from
    earlier ids read those from the table)."""

    def __init__(
        self,
        feed: SqlEventFeed,
        *,
        poll_interval: float,
        gap_grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self._poll_interval = poll_interval
        self._gap_grace = gap_grace
        self._clock = clock
        self._subscriptions: set[_Subscription] = set()
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def released(self) -> int:
        return self._tailer.released if self._tailer is not None else 0

    async def start(self) -> None:
        start = await self._feed.newest_event_id()
        self._tailer = Tailer(
            self._feed, start=start, gap_grace=self._gap_grace, hole_keep=600.0, clock=self._clock
        )
        self._task = asyncio.create_task(self._run(), name="events-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, query: EventQuery, origin: int | None) -> _Subscription:
        released = self.released
        subscription = _Subscription(
            self, query, origin=released if origin is None else origin, start=released
        )
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Any) -> None:
        self._subscriptions.discard(subscription)

    def wake_all(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(asyncio.QueueFull):
                subscription.queue.put_nowait(None)

    def replay(self, tenant_id: str, events: Sequence[EventLike]) -> int:
        """Queue `events` for every watcher of the tenant that matches and was not sent
        them; the deliveries made."""
        delivered = 0
        for subscription in list(self._subscriptions):
            if subscription.query.tenant_id != tenant_id:
                continue
            for event in events:
                event_id = int(event.event_id)
                if not subscription.query.matches(event) or subscription.was_sent(event_id):
                    continue
                if subscription.offer(Delivery(event, in_order=False)):
                    subscription.replayed.add(event_id)
                    delivered += 1
        return delivered

    def _dispatch(self, rows: Sequence[Any], *, in_order: bool) -> None:
        if not self._subscriptions:
            return
        for row in rows:
            for subscription in list(self._subscriptions):
                if not subscription.query.matches(row):
                    continue
                event_id = int(row.event_id)
                if in_order and event_id <= subscription.start:
                    continue  # subscribed while `_whole` read it: released before the start
                if not in_order:  # a late event was never released in order: a hole
                    if event_id in subscription.replayed:
                        continue
                    subscription.replayed.add(event_id)
                subscription.offer(Delivery(row, in_order=in_order))

    async def _run(self) -> None:
        assert self._tailer is not None
        failing = False
        while True:
            try:
                # With no watcher the hub only keeps its place (ids from the primary key's
                # index): under load, reading back every committed event's row was ~8 %
                # of the server's CPU per job in bench/jobs.py, for nobody.
                released, late, full = await self._tailer.poll(ids_only=not self._subscriptions)
                self._dispatch(late, in_order=False)  # whole rows: before anything can fail
                if self._subscriptions:
                    try:
                        released = await self._whole(released)
                    except Exception:
                        self._lag_all()  # released without rows: watchers re-read the table
                        raise
            except Exception as exc:  # the database is down: watchers wait, nothing is lost
                if not failing:
                    log.warning("events hub cannot read the events table: %s", exc)
                failing = True
                await asyncio.sleep(max(self._poll_interval, 1.0))
                continue
            failing = False
            self._dispatch(released, in_order=True)
            if not full:
                await asyncio.sleep(self._poll_interval)

    def _lag_all(self) -> None:
        for subscription in self._subscriptions:
            subscription.lagging = True
        self.wake_all()

    async def _whole(self, released: list[Any]) -> list[Any]:
        """`released` with every row read by id alone (while nobody watched; released
        only now, after a gap below it filled) read whole; one pruned since is dropped."""
        partial = [int(row.event_id) for row in released if "data" not in row._fields]
        if not partial:
            return released
        whole = {int(row.event_id): row for row in await self._feed.with_ids(partial)}
        return [
            row if "data" in row._fields else whole[int(row.event_id)]
            for row in released
            if "data" in row._fields or int(row.event_id) in whole
        ]


def _stream_fields(event: EventLike) -> list[str]:
    moment = event.time if event.time.tzinfo is not None else event.time.replace(tzinfo=UTC)
    return [
        str(event.event_id),
        event.tenant_id or "",
        event.type,
        event.subject,
        event.data,
        event.trace_id or "",
        moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    ]


def outbox_redis(host: str, port: int) -> Redis:
    """A Redis client for the outbox: a call fails at once when Redis is unreachable (no
    client-side retries, 2 s socket timeouts), since the outbox retries on its own
    schedule and a replay answers UNAVAILABLE rather than hold its caller."""
    return Redis(
        host=host,
        port=port,
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )


class RedisOutbox:
    """Publishes every event to the Redis stream `stream` (see the module docstring)."""

    def __init__(
        self,
        feed: SqlEventFeed,
        db: Database,
        redis: Redis,
        *,
        stream: str,
        maxlen: int,
        poll_interval: float,
        gap_grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self._db = db
        self._redis = redis
        self.stream = stream
        self.ids_key = f"{stream}:ids"
        self.cursor_name = f"redis:{stream}"
        self._maxlen = maxlen
        self._poll_interval = poll_interval
        self._gap_grace = gap_grace
        self._clock = clock
        self._script = redis.register_script(_ADD_SCRIPT)
        self._tailer: Tailer | None = None
        self._task: asyncio.Task[None] | None = None
        self._saved = -1
        self._trimmed_at = 0.0

    async def start(self) -> None:
        start = await read_cursor(self._db, self.cursor_name) or 0
        self._saved = start
        self._tailer = Tailer(
            self._feed, start=start, gap_grace=self._gap_grace, hole_keep=600.0, clock=self._clock
        )
        self._task = asyncio.create_task(self._run(), name="events-redis-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def published_through(self) -> int | None:
        """The stored cursor: every event up to it is in the stream (None: none yet)."""
        return await read_cursor(self._db, self.cursor_name)

    async def add(self, events: Sequence[EventLike]) -> int:
        """Add the events the stream does not hold; how many it added. Raises RedisError
        or OSError when Redis cannot be reached."""
        added = 0
        for begin in range(0, len(events), STREAM_CHUNK):
            values: list[str] = []
            for event in events[begin : begin + STREAM_CHUNK]:
                values += _stream_fields(event)
            added += int(
                await self._script(keys=[self.stream, self.ids_key], args=[self._maxlen, *values])
            )
        return added

    async def replay(self, events: Sequence[EventLike]) -> int:
        """`add`, with an unreachable Redis as the domain's Unavailable."""
        try:
            return await self.add(events)
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"the Redis event stream cannot be reached ({exc}); nothing was re-published, "
                "retry later",
                reason="EVENT_STREAM_UNAVAILABLE",
            ) from None

    async def _run(self) -> None:
        assert self._tailer is not None
        pending: list[Any] = []
        failing = False
        pause = self._poll_interval
        while True:
            full = False
            try:
                if not pending:
                    released, late, full = await self._tailer.poll()
                    pending = released + late
                if pending:
                    await self.add(pending)
                    pending = []
                position = self._tailer.low_water()
                if position > self._saved:
                    await write_cursor(self._db, self.cursor_name, position)
                    self._saved = position
                await self._trim()
                if failing:
                    log.info("events outbox: publishing to Redis stream %s again", self.stream)
                failing, pause = False, self._poll_interval
            except Exception as exc:  # Redis or the database is down: retry, lose nothing
                if not failing:
                    log.warning("events outbox: cannot publish to Redis yet: %s", exc)
                failing = True
                pause = min(max(pause * 2, 0.5), 5.0)
                full = False
            if not full:
                await asyncio.sleep(pause)

    async def _trim(self) -> None:
        now = self._clock()
        if now - self._trimmed_at < TRIM_EVERY_S:
            return
        self._trimmed_at = now
        oldest = await self._feed.oldest_event_id()
        if oldest is not None:
            await self._redis.zremrangebyscore(self.ids_key, "-inf", f"({oldest}")


class EventPublication:
    """The domain's `EventSubscribers`: this process's watchers, and the Redis stream
    when there is one."""

    def __init__(
        self, feed: SqlEventFeed, hub: EventHub, outbox: RedisOutbox | None = None
    ) -> None:
        self.feed = feed  # the reads watch backlogs and replays use
        self.hub = hub
        self.outbox = outbox
        self.closing = False  # the server is stopping: watches end

    def close_watches(self) -> None:
        """End every watch (their streams complete) and refuse none: a stopping server's
        gRPC grace period is not spent waiting on streams that never end by themselves."""
        self.closing = True
        self.hub.wake_all()

    async def start(self) -> None:
        await self.hub.start()
        if self.outbox is not None:
            await self.outbox.start()

    async def stop(self) -> None:
        await self.hub.stop()
        if self.outbox is not None:
            await self.outbox.stop()

    def subscribe(self, query: EventQuery, origin: int | None) -> _Subscription:
        return self.hub.subscribe(query, origin)

    def stopping(self) -> bool:
        return self.closing

    def unsubscribe(self, subscription: Any) -> None:
        self.hub.unsubscribe(subscription)

    async def replay(self, tenant_id: str, events: Sequence[EventLike]) -> tuple[int, int]:
        streamed = await self.outbox.replay(events) if self.outbox is not None else 0
        return self.hub.replay(tenant_id, events), streamed

    async def unpublished_above(self) -> int | None:
        if self.outbox is None:
            return None
        return await self.outbox.published_through() or 0
