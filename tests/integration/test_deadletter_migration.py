"""Migration 0006 (deadletter_entries, deadletter_clusters) on SQLite and PostgreSQL:
exactly what the row classes declare (autogenerate finds nothing to change), the
pending entries' partial index with its predicate, the stats' oldest-pending read and
the replay sweep served by it on PostgreSQL, a job with one entry at most, and a way
down and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import DEADLETTER_PENDING_PREDICATE, DeadLetterEntryRow, table_of
from tests.conftest import BACKENDS
from tests.support.migrations import differences, index_sql, migrated, run_alembic, table_names

TABLES = {"deadletter_entries", "deadletter_clusters"}
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    async with migrated(request.param, tmp_path) as database:
        yield database


def _entry(entry_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "entry_id": entry_id,
        "tenant_id": "t-1",
        "job_id": f"job-{entry_id}",
        "job_type": "scan",
        "source_id": "s-1",
        "category": "timeout",
        "error_code": "T",
        "message": "timeout",
        "fingerprint": "0123456789abcdef",
        "retryable": True,
        "attempts": 1,
        "status": "pending",
        "first_failed_at": T0,
        "last_failed_at": T0,
        "replay_count": 0,
        "updated_at": T0,
    }
    row.update(values)
    return row


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []
        indexes = await conn.run_sync(index_sql, "deadletter_entries")
    expected = (
        "WHERE ((status)::text = 'pending'::text)"
        if db.engine.dialect.name == "postgresql"
        else f"WHERE {DEADLETTER_PENDING_PREDICATE}"
    )
    assert indexes["ix_deadletter_entries_pending"].endswith(expected)
    assert "(tenant_id, last_failed_at, entry_id)" in indexes["ix_deadletter_entries_pending"]


async def test_a_job_has_one_entry_at_most(db: Database) -> None:
    entries = table_of(DeadLetterEntryRow)
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(entries), [_entry("e-1")])
    with pytest.raises(sa.exc.IntegrityError):
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(entries), [_entry("e-2", job_id="job-e-1")])


@pytest.mark.parametrize(
    "db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_oldest_pending_and_the_sweep_read_the_pending_index(db: Database) -> None:
    statements = [
        "SELECT last_failed_at FROM deadletter_entries WHERE tenant_id = 't-1'"
        f" AND {DEADLETTER_PENDING_PREDICATE}"
        " ORDER BY tenant_id, last_failed_at, entry_id LIMIT 1",
        "SELECT * FROM deadletter_entries WHERE tenant_id = 't-1'"
        f" AND {DEADLETTER_PENDING_PREDICATE} AND (last_failed_at, entry_id) >"
        " ('2026-11-30T08:00:00Z', 'e') ORDER BY last_failed_at, entry_id LIMIT 501",
    ]
    for statement in statements:
        async with db.engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = (await conn.execute(sa.text("EXPLAIN " + statement))).scalars().all()
        text = "\n".join(plan)
        assert "ix_deadletter_entries_pending" in text, text
        assert "Sort" not in text, text


async def test_the_migration_goes_down_and_up(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(run_alembic, "downgrade", "0005")
        assert TABLES.isdisjoint(await conn.run_sync(table_names))
    await db.migrate()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []
