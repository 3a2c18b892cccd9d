"""The in-process events hub (server/storage/event_publisher.py `EventHub`) against the
real database: with no watcher it keeps its place by event id alone (no event's row is
read back), and an event it read by id while nobody watched reaches a watcher that
subscribed before the event was released, whole: on PostgreSQL, one held back behind
an earlier transaction that commits only after the watcher subscribed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from server.app import Application
from server.domain.event_feed import EventQuery
from server.storage.db import Database
from server.storage.event_publisher import EventHub
from server.storage.repositories.events import IDS_PER_READ, SqlEventFeed, insert_events
from tests.integration.test_events import append, event

POLL_S = 0.01


@pytest.fixture
async def hub_db(app: Application) -> AsyncIterator[Database]:
    """The hub's own engine on the app's database: what it reads is the hub's alone
    (the session-wide app, and hubs other tests started on it, read the same table)."""
    db = Database(app.db.url.render_as_string(hide_password=False))
    yield db
    await db.dispose()


@pytest.fixture
async def hub(hub_db: Database) -> AsyncIterator[EventHub]:
    events_hub = EventHub(SqlEventFeed(hub_db), poll_interval=POLL_S, gap_grace=30.0)
    await events_hub.start()
    yield events_hub
    await events_hub.stop()


@contextlib.contextmanager
def event_reads(db: Database) -> Any:
    """The SELECTs of the events table made meanwhile through `db` (columns read,
    lower case)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM events" in statement:
            seen.append(statement.split("FROM events")[0].lower())

    engine = db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(int(10 / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError("not within 10 s")


async def _deliveries(subscription: Any, count: int) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            delivery = await subscription.queue.get()
            if delivery is not None:
                got.append(delivery)
    return got


async def test_with_no_watcher_the_hub_reads_event_ids_only(
    app: Application, hub_db: Database, hub: EventHub, tenant: str
) -> None:
    with event_reads(hub_db) as reads:
        [event_id] = await append(app, [event(tenant, minute=0)])
        await _until(lambda: hub.released >= event_id)
    assert reads, "the hub read nothing"
    assert all("data" not in columns and "event_id" in columns for columns in reads)
    subscription = hub.subscribe(EventQuery(tenant_id=tenant), None)
    with event_reads(hub_db) as reads:
        [watched] = await append(app, [event(tenant, minute=1, data={"n": 1})])
        [delivery] = await _deliveries(subscription, 1)
    assert (delivery.event.event_id, delivery.event.data) == (watched, '{"n":1}')
    assert any("data" in columns for columns in reads)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_event_read_by_id_alone_reaches_a_later_watcher_whole(
    app: Application, hub_db: Database, hub: EventHub, tenant: str
) -> None:
    async with app.db.engine.connect() as slow, app.db.engine.connect() as fast:
        slow_tx = await slow.begin()
        await insert_events(slow, [event(tenant, minute=0, data={"n": 0})])  # a lower id
        async with fast.begin():
            await insert_events(fast, [event(tenant, minute=1, data={"n": 1})])
        second = int(
            (
                await fast.execute(
                    sa.text("SELECT max(event_id) FROM events WHERE tenant_id = :t"), {"t": tenant}
                )
            ).scalar_one()
        )
        with event_reads(hub_db) as reads:
            await _until(lambda: bool(reads))  # the hub saw the committed one, behind the gap
            await asyncio.sleep(5 * POLL_S)
        assert hub.released < second
        subscription = hub.subscribe(EventQuery(tenant_id=tenant), None)
        await slow_tx.commit()
    deliveries = await _deliveries(subscription, 2)
    assert [(d.event.data, d.in_order) for d in deliveries] == [
        ('{"n":0}', True),
        ('{"n":1}', True),
    ]
    assert deliveries[1].event.event_id == second


async def test_reads_by_id_take_more_ids_than_one_statement_can_bind(
    app: Application, tenant: str
) -> None:
    """PostgreSQL binds at most 32,767 parameters: the ids go in chunks."""
    ids = await append(app, [event(tenant, minute=0), event(tenant, minute=1)])
    # Ids no writer can reach during the test: the ones right above ours were taken by
    # another writer of the shared session database meanwhile (once, in a CI run).
    unreachable = 10**12
    asked = [*ids, *range(unreachable, unreachable + 3 * IDS_PER_READ)]
    asked += range(-7 * IDS_PER_READ, 0)  # 40,000 ids in all, two of them stored
    assert len(asked) > 32_767
    found = await SqlEventFeed(app.db).with_ids(asked)
    assert [(row.event_id, row.tenant_id) for row in found] == [(i, tenant) for i in ids]
    assert [
        row.event_id for row in await SqlEventFeed(app.db).with_ids(asked, ids_only=True)
    ] == ids


async def test_ids_after_a_position_come_in_order_up_to_the_limit(
    app: Application, tenant: str
) -> None:
    """`after(ids_only=True)`: on PostgreSQL one array, not a row per id; the same ids
    either way, each readable as `event_id`."""
    feed = SqlEventFeed(app.db)
    start = await feed.newest_event_id()
    ids = await append(app, [event(tenant, minute=m) for m in range(5)])

    mine = [
        row.event_id
        for row in await feed.after(start, 10_000, ids_only=True)
        if row.event_id in ids
    ]
    first_three = await feed.after(ids[0] - 1, 3, ids_only=True)
    beyond = await feed.after(await feed.newest_event_id(), 10, ids_only=True)

    assert mine == ids
    assert len(first_three) == 3 and first_three[0].event_id == ids[0]
    assert [row.event_id for row in first_three] == sorted(row.event_id for row in first_three)
    assert list(beyond) == []
