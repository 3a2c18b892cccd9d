"""SQLite storage on a real file: the adapter (server/storage/sqlite_driver.py) makes
one thread hand-off per statement, none for the pool's reset of a connection without a
transaction, and gives the DB-API results SQLAlchemy reads (rows, RETURNING, rowcount,
lastrowid, executemany, errors, streamed results) as aiosqlite's cursor does; the pool
keeps its connections under concurrent load instead of opening and closing overflow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa

from server.storage.db import SQLITE_CONNECTIONS, Database
from server.storage.sqlite_driver import OneHopConnection

_items = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("item_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(_items.metadata.create_all)
    yield database
    await database.dispose()


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions aiosqlite ran on a connection's thread."""
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_a_read_is_one_hand_off_and_its_return_to_the_pool_none(
    db: Database, hand_offs: list[str]
) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(_items), [{"name": "a"}])
    async with db.read() as conn:  # warm: the pooled connection exists
        await conn.execute(sa.select(_items.c.name))
    hand_offs.clear()
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(_items.c.name))).all()
    assert [tuple(row) for row in rows] == [("a",)]
    assert hand_offs == ["_execute"]


async def test_a_write_transaction_is_its_statements_and_the_commit(
    db: Database, hand_offs: list[str]
) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(_items).values(name="warm"))
    hand_offs.clear()
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(_items).values(name="b"))
        await conn.execute(sa.update(_items).where(_items.c.name == "b").values(name="c"))
    assert hand_offs == ["_execute", "_execute", "commit"]


async def test_results_are_those_of_a_sqlite3_cursor(db: Database) -> None:
    async with db.engine.begin() as conn:
        raw: Any = (await conn.get_raw_connection()).dbapi_connection
        assert isinstance(raw, OneHopConnection)
        inserted = await conn.execute(sa.insert(_items).values(name="x"))
        assert inserted.inserted_primary_key == (1,)  # from the cursor's lastrowid
        many = await conn.execute(sa.insert(_items), [{"name": "y"}, {"name": "z"}])
        assert many.rowcount == 2
        returned = await conn.execute(
            sa.update(_items)
            .where(_items.c.name.in_(["y", "z"]))
            .values(name=_items.c.name + "!")
            .returning(_items.c.item_id, _items.c.name)
        )
        assert sorted(tuple(row) for row in returned) == [(2, "y!"), (3, "z!")]
        deleted = await conn.execute(sa.delete(_items).where(_items.c.name == "nothing"))
        assert deleted.rowcount == 0
        updated = await conn.execute(sa.update(_items).values(name=_items.c.name + "?"))
        assert updated.rowcount == 3
    async with db.read() as conn:
        streamed = await conn.stream(sa.select(_items.c.name).order_by(_items.c.item_id))
        assert [row[0] async for row in streamed] == ["x?", "y!?", "z!?"]


async def test_a_failed_statement_raises_and_rolls_back(db: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(_items).values(name="dup"))
            await conn.execute(sa.insert(_items).values(name="dup"))
    async with db.read() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(_items))).scalar()
    assert count == 0
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        async with db.read() as conn:
            await conn.execute(sa.text("SELECT * FROM missing"))


async def test_concurrent_reads_reuse_the_pooled_connections(db: Database) -> None:
    connects: list[object] = []
    sa.event.listen(db.engine.sync_engine, "connect", lambda *_: connects.append(1))

    async def read() -> None:
        async with db.read() as conn:
            await conn.execute(sa.select(_items.c.name))
            await asyncio.sleep(0.01)  # held, so the calls overlap

    await asyncio.gather(*(read() for _ in range(3 * SQLITE_CONNECTIONS)))
    opened = len(connects)
    assert 1 <= opened <= SQLITE_CONNECTIONS
    await asyncio.gather(*(read() for _ in range(3 * SQLITE_CONNECTIONS)))
    assert len(connects) == opened  # none closed on return, none opened again


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://"])
async def test_an_in_memory_database_works_on_its_one_connection(url: str) -> None:
    database = Database(url)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(_items.metadata.create_all)
            await conn.execute(sa.insert(_items).values(name="kept"))
        async with database.read() as conn:
            names = (await conn.execute(sa.select(_items.c.name))).scalars().all()
        assert names == ["kept"]
    finally:
        await database.dispose()
