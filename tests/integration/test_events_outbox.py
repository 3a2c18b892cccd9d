"""The events outbox (issue 12 point 6, DESIGN §9): publication in id order past commit
gaps, and the Redis stream that a Redis outage delays but never loses or duplicates.

- `Tailer` against the real database: on PostgreSQL a transaction holding a lower id
  commits after one holding a higher id, and the tailer holds the higher one back
  until the gap fills, gives up on a rolled-back id after the grace period, and hands
  out a very late commit as `late`. SQLite serialises writers, so ids commit in order.
- A server of its own with REDIS_HOST set: the real Redis on 127.0.0.1:6379, and a
  private redis-server (append-only file in a temporary directory) that the test stops
  while events are written and starts again: every event is in the stream once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from server.app import Application
from server.config import Settings
from server.storage.event_publisher import Tailer
from server.storage.repositories.events import SqlEventFeed, insert_events, read_cursor
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database
from tests.integration.test_events import append, event
from tests.support.auth import TokenFactory

WAIT = 15.0  # seconds a test waits for publication


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _insert(conn: Any, tenant: str, minute: int) -> int:
    await insert_events(conn, [event(tenant, minute=minute)])
    found = await conn.execute(
        sa.text("SELECT max(event_id) FROM events WHERE tenant_id = :t"), {"t": tenant}
    )
    return int(found.scalar_one())


def _mine(rows: list[Any], tenant: str) -> list[int]:
    return [int(row.event_id) for row in rows if row.tenant_id == tenant]


async def test_tailer_holds_a_later_id_back_until_an_earlier_transaction_commits(
    app: Application, tenant: str
) -> None:
    feed = SqlEventFeed(app.db)
    clock = _Clock()
    tailer = Tailer(
        feed, start=await feed.newest_event_id(), gap_grace=5.0, hole_keep=60.0, clock=clock
    )
    if app.db.is_sqlite:  # one writer at a time: commit order is id order
        ids = await append(app, [event(tenant, minute=0), event(tenant, minute=1)])
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == (ids, [])
        return
    async with app.db.engine.connect() as slow, app.db.engine.connect() as fast:
        slow_tx = await slow.begin()
        first = await _insert(slow, tenant, 0)  # holds the lower id, not committed yet
        async with fast.begin():
            second = await _insert(fast, tenant, 1)
        assert second > first
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == ([], [])  # held back behind the gap
        await slow_tx.commit()
    released, late, _ = await tailer.poll()
    assert (_mine(released, tenant), late) == ([first, second], [])
    # The session's server shares this database: its background loops may hold other
    # ids open meanwhile, so the cursor's position past ours is not this test's to pin.
    assert tailer.low_water() <= tailer.released


async def test_tailer_gives_up_on_a_rolled_back_id_and_hands_out_a_late_commit(
    app: Application, tenant: str
) -> None:
    if app.db.is_sqlite:
        # SQLite: a rolled-back id is never visible and AUTOINCREMENT moves past it only
        # when a later insert commits, so there is no gap to wait for.
        feed = SqlEventFeed(app.db)
        async with app.db.engine.connect() as conn:
            tx = await conn.begin()
            await _insert(conn, tenant, 0)
            await tx.rollback()
        tailer = Tailer(feed, start=await feed.newest_event_id(), gap_grace=5.0, hole_keep=60.0)
        ids = await append(app, [event(tenant, minute=1)])
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == (ids, [])
        return
    feed = SqlEventFeed(app.db)
    clock = _Clock()
    tailer = Tailer(
        feed, start=await feed.newest_event_id(), gap_grace=5.0, hole_keep=60.0, clock=clock
    )
    async with (
        app.db.engine.connect() as rolled,
        app.db.engine.connect() as slow,
        app.db.engine.connect() as fast,
    ):
        rolled_tx = await rolled.begin()
        hole = await _insert(rolled, tenant, 0)
        slow_tx = await slow.begin()
        very_late = await _insert(slow, tenant, 1)
        async with fast.begin():
            after = await _insert(fast, tenant, 2)
        await rolled_tx.rollback()
        released, _, _ = await tailer.poll()
        assert _mine(released, tenant) == []
        clock.now += 5.0  # the grace passes: both missing ids count as holes
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == ([after], [])
        assert tailer.low_water() == hole - 1  # a restart would look at the holes again
        await slow_tx.commit()
    released, late, _ = await tailer.poll()
    assert (released, _mine(late, tenant)) == ([], [very_late])
    clock.now += 60.0  # the rolled-back id is forgotten after hole_keep
    await tailer.poll()
    assert tailer.low_water() == tailer.released


async def test_events_read_in_order_after_holes_come_with_the_late_commit(
    app: Application, tenant: str
) -> None:
    """The tailer releases a run of events that follows the last id it read as read
    (no per-event bookkeeping); holes it still watches are read first, so an event
    committed into one comes out beside them, and nothing is released twice."""
    feed = SqlEventFeed(app.db)
    clock = _Clock()
    tailer = Tailer(
        feed, start=await feed.newest_event_id(), gap_grace=5.0, hole_keep=60.0, clock=clock
    )
    in_order = await append(app, [event(tenant, minute=m) for m in range(3)])
    released, late, _ = await tailer.poll()
    assert (_mine(released, tenant), late) == (in_order, [])
    if app.db.is_sqlite:  # no commit-order gaps: the next run follows in order too
        more = await append(app, [event(tenant, minute=3), event(tenant, minute=4)])
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == (more, [])
        return
    async with app.db.engine.connect() as slow, app.db.engine.connect() as fast:
        slow_tx = await slow.begin()
        very_late = await _insert(slow, tenant, 5)  # its id is missing until it commits
        async with fast.begin():
            after = await _insert(fast, tenant, 6)
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == ([], [])  # held back behind the gap
        clock.now += 5.0  # the grace passes while the slow transaction runs: a hole
        released, late, _ = await tailer.poll()
        assert (_mine(released, tenant), late) == ([after], [])
        await slow_tx.commit()
    more = await append(app, [event(tenant, minute=7), event(tenant, minute=8)])
    released, late, _ = await tailer.poll()
    assert (_mine(released, tenant), _mine(late, tenant)) == (more, [very_late])
    released, late, _ = await tailer.poll()
    assert (_mine(released, tenant), _mine(late, tenant)) == ([], [])


async def test_tailer_gives_up_on_a_rolled_back_id_without_waiting_for_the_grace(
    app: Application, tenant: str
) -> None:
    """PostgreSQL: once no transaction that was running when the gap was seen is left,
    the missing id is a hole (pg_current_snapshot); the grace (an hour here) is only the
    fallback. SQLite has no gap to wait for."""
    feed = SqlEventFeed(app.db)
    tailer = Tailer(
        feed, start=await feed.newest_event_id(), gap_grace=3600.0, hole_keep=60.0, clock=_Clock()
    )
    async with app.db.engine.connect() as conn:
        tx = await conn.begin()
        await _insert(conn, tenant, 0)
        await tx.rollback()
    after = await append(app, [event(tenant, minute=1)])
    released: list[int] = []
    for _ in range(20):  # the server's own short transactions may be running: poll again
        found, late, _ = await tailer.poll()
        released += _mine(found, tenant)
        assert late == []
        if released:
            break
        await asyncio.sleep(0.05)
    assert released == after


async def test_an_id_cleared_before_the_tailer_read_it_holds_nothing_back(
    app: Application, tenant: str
) -> None:
    """A clear (or pruning) may delete events no publisher has read yet: their ids are
    gone for good, not a transaction still running, so nothing waits for the grace."""
    feed = SqlEventFeed(app.db)
    tailer = Tailer(
        feed, start=await feed.newest_event_id(), gap_grace=3600.0, hole_keep=60.0, clock=_Clock()
    )
    first, cleared, last = await append(app, [event(tenant, minute=m) for m in range(3)])
    async with app.db.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM events WHERE event_id = :i"), {"i": cleared})
    released: list[int] = []
    for _ in range(20):  # the server's own short transactions may be running: poll again
        found, _, _ = await tailer.poll()
        released += _mine(found, tenant)
        if last in released:
            break
        await asyncio.sleep(0.05)
    assert released == [first, last]


# --- Redis -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of the test's own, persisting to an append-only file in `directory`
    so a restart keeps the stream, as a production Redis does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *[
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--dir", str(self.directory),
            ],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = Redis(port=self.port)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        if await client.ping():
                            return
                    except (OSError, RedisConnectionError):  # still starting
                        pass
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            async with asyncio.timeout(10):
                await self.process.wait()
            self.process = None


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    yield server
    await server.stop()


@pytest.fixture(params=BACKENDS)
async def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of the test's own: its server publishes every event in it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


async def _server(database_url: str, redis_port: int, stream: str) -> Application:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        grpc_port=0,
        database_url=database_url,
        shutdown_grace_seconds=1,
        redis_host="127.0.0.1",
        redis_port=redis_port,
        events_stream=stream,
        events_poll_interval_seconds=0.05,
        events_gap_grace_seconds=1.0,
    )
    app = Application(settings)
    await app.start()
    return app


async def _entries(redis: Redis, stream: str) -> list[dict[str, str]]:
    """The stream's entries' fields, oldest first."""
    found: Any = await redis.xrange(stream)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in found]


async def _stream_ids(redis: Redis, stream: str, count: int) -> list[str]:
    """The eventId of every entry, once the stream holds `count` entries."""
    async with asyncio.timeout(WAIT):
        while True:
            entries = await _entries(redis, stream)
            if len(entries) >= count:
                return [fields["eventId"] for fields in entries]
            await asyncio.sleep(0.05)


async def _cursor_reaches(app: Application, stream: str, position: int) -> None:
    """Wait until the outbox has stored `position` as its cursor."""
    for _ in range(int(WAIT / 0.05)):
        if await read_cursor(app.db, f"redis:{stream}") == position:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the outbox cursor never reached {position}")


async def test_every_event_is_published_to_the_real_redis_once_with_its_fields(
    own_database: str,
) -> None:
    stream = f"test-events:{uuid.uuid4().hex}"
    redis = Redis(port=6379)
    app = await _server(own_database, 6379, stream)
    try:
        tenant = "outbox-a"
        made = [
            event(tenant, "job.enqueued", "jobs/a", minute=0),
            event(tenant, "job.leased", "jobs/a", minute=1, trace=None, data={"to": "leased"}),
        ]
        ids = await append(app, made)
        assert await _stream_ids(redis, stream, 2) == [str(i) for i in ids]
        assert (await _entries(redis, stream))[1] == {
            "eventId": str(ids[1]),
            "tenantId": tenant,
            "type": "job.leased",
            "subject": "jobs/a",
            "data": '{"to":"leased"}',
            "traceId": "",
            "time": "2026-01-05T09:01:00Z",
        }
        await _cursor_reaches(app, stream, ids[1])
    finally:
        await app.stop(grace=1)
    # A restart resumes after the stored cursor: nothing is added twice.
    app = await _server(own_database, 6379, stream)
    try:
        [later] = await append(app, [event("outbox-a", minute=2)])
        assert await _stream_ids(redis, stream, 3) == [str(i) for i in (*ids, later)]
        await asyncio.sleep(0.3)
        assert await redis.xlen(stream) == 3
    finally:
        await app.stop(grace=1)
        await redis.delete(stream, f"{stream}:ids")
        await redis.aclose()


async def test_a_redis_outage_delays_publication_and_loses_or_repeats_nothing(
    own_database: str, private_redis: PrivateRedis
) -> None:
    await private_redis.start()
    stream = "orchestrator:events"
    app = await _server(own_database, private_redis.port, stream)
    redis = Redis(port=private_redis.port)
    tenant = "outage-a"
    try:
        tokens = TokenFactory(app, f"http://127.0.0.1:{app.http_port}")
        admin = await tokens.headers(tenant, ("orch:admin",))
        operate = await tokens.headers(tenant, ("orch:read", "orch:operate"))
        before = await append(app, [event(tenant, minute=m) for m in range(3)])
        assert await _stream_ids(redis, stream, 3) == [str(i) for i in before]
        await _cursor_reaches(app, stream, before[-1])

        await private_redis.stop()
        during = await append(app, [event(tenant, minute=m) for m in range(3, 7)])
        await asyncio.sleep(0.5)  # the outbox tries, fails, backs off
        assert await read_cursor(app.db, f"redis:{stream}") == before[-1]

        # A clear keeps what the stream has not got yet.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as http:
            cutoff = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            cleared = await http.post(
                "/infrastructure/events/clear",
                json={"olderThan": cutoff},
                headers={**admin, "X-Stella-Operator-Reason": "retention"},
            )
            assert cleared.status_code == 200, cleared.text
            assert cleared.json() == {
                "deleted": "3",
                "retainedUnpublished": "4",
                "tenantId": tenant,
            }

            await private_redis.start()
            assert await _stream_ids(redis, stream, 7) == [str(i) for i in (*before, *during)]
            await asyncio.sleep(0.3)
            assert await redis.xlen(stream) == 7  # each once

            # Replay re-adds only what the stream lost (here: all of it).
            replay = {"fromEventId": str(before[0]), "toEventId": str(during[-1])}
            headers = {**operate, "X-Stella-Operator-Reason": "consumers rebuild"}
            again = await http.post("/infrastructure/events/replay", json=replay, headers=headers)
            assert again.json() == {"matched": 4, "delivered": 0, "streamed": 0}
            await redis.delete(stream, f"{stream}:ids")
            restored = await http.post(
                "/infrastructure/events/replay", json=replay, headers=headers
            )
            assert restored.json() == {"matched": 4, "delivered": 0, "streamed": 4}
            assert await _stream_ids(redis, stream, 4) == [str(i) for i in during]

            await private_redis.stop()
            refused = await http.post("/infrastructure/events/replay", json=replay, headers=headers)
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "UNAVAILABLE"
            assert refused.json()["error"].startswith("the Redis event stream cannot be reached")
    finally:
        await app.stop(grace=1)
        await redis.aclose()


async def test_an_idle_watch_sends_heartbeats(own_database: str) -> None:
    """WatchEvents says every EVENTS_WATCH_HEARTBEAT_SECONDS that it is open."""
    settings = Settings(
        host="127.0.0.1",
        port=0,
        grpc_port=0,
        database_url=own_database,
        shutdown_grace_seconds=1,
        events_watch_heartbeat_seconds=0.2,
    )
    app = Application(settings)
    await app.start()
    try:
        tokens = TokenFactory(app, f"http://127.0.0.1:{app.http_port}")
        headers = {**await tokens.headers("idle", ("orch:read",)), "Accept": "text/event-stream"}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as http,
            http.stream("GET", "/infrastructure/events/watch", headers=headers) as response,
        ):
            data: list[Any] = []
            async with asyncio.timeout(WAIT):
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        data.append(json.loads(line.removeprefix("data: ")))
                    if len(data) == 3:
                        break
        heartbeat = {"result": {"heartbeat": True, "replayed": False, "resumeEventId": ""}}
        assert data == [heartbeat] * 3
    finally:
        await app.stop(grace=1)
