"""Migration 0008 (schedules, backfills, backfill_jobs, jobs.event_time; issue 10) on
SQLite and PostgreSQL: it builds exactly what the row classes declare (autogenerate finds
nothing to change for these tables or the new column), the due-time index the scheduler
claims by, a schedule claimed with SKIP LOCKED is invisible to a second claimer, and it
goes down to 0007 and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.storage.db import Database
from tests.conftest import BACKENDS
from tests.support.migrations import differences, migrated, run_alembic

TABLES = {"schedules", "backfills", "backfill_jobs"}
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    async with migrated(request.param, tmp_path) as database:
        yield database


def _shape(connection: sa.Connection) -> tuple[set[str], set[str], set[str]]:
    inspector = sa.inspect(connection)
    return (
        set(inspector.get_table_names()),
        {column["name"] for column in inspector.get_columns("jobs")},
        {index["name"] or "" for index in inspector.get_indexes("schedules")}
        if "schedules" in inspector.get_table_names()
        else set(),
    )


def _schedule(source_id: str) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "tenant_id": "t-1",
        "cron": "* * * * *",
        "time_zone": "UTC",
        "misfire_policy": "skip",
        "job_type": "tick",
        "priority": 0,
        "max_attempts": 3,
        "backoff_initial_s": 1.0,
        "backoff_max_s": 300.0,
        "backoff_multiplier": 2.0,
        "backoff_jitter": 0.2,
        "next_run_at": T0,
        "created_at": T0,
        "updated_at": T0,
    }


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        tables, job_columns, schedule_indexes = await conn.run_sync(_shape)
        assert tables >= TABLES
        assert "event_time" in job_columns
        assert "ix_schedules_due" in schedule_indexes
        assert await conn.run_sync(differences, TABLES, columns=("event_time",)) == []


@pytest.mark.parametrize(
    "db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_claimed_schedule_is_skipped_by_a_second_claimer(db: Database) -> None:
    schedules = sa.table("schedules", sa.column("source_id"), sa.column("next_run_at"))
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO schedules (source_id, tenant_id, cron, time_zone, misfire_policy,"
                " job_type, priority, max_attempts, backoff_initial_s, backoff_max_s,"
                " backoff_multiplier, backoff_jitter, next_run_at, created_at, updated_at)"
                " VALUES (:source_id, :tenant_id, :cron, :time_zone, :misfire_policy,"
                " :job_type, :priority, :max_attempts, :backoff_initial_s, :backoff_max_s,"
                " :backoff_multiplier, :backoff_jitter, :next_run_at, :created_at, :updated_at)"
            ),
            [_schedule("s-1"), _schedule("s-2")],
        )
    claim = (
        sa.select(schedules.c.source_id)
        .where(schedules.c.next_run_at <= T0)
        .order_by(schedules.c.next_run_at, schedules.c.source_id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    async with db.engine.connect() as first, db.engine.connect() as second:
        await first.begin()
        await second.begin()
        mine = (await first.execute(claim)).scalars().all()
        theirs = (await second.execute(claim)).scalars().all()
        assert (mine, theirs) == (["s-1"], ["s-2"])
        await first.rollback()
        await second.rollback()


async def test_the_migration_goes_down_and_up(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(run_alembic, "downgrade", "0007")
        tables, job_columns, _ = await conn.run_sync(_shape)
        assert TABLES.isdisjoint(tables)
        assert "event_time" not in job_columns
    await db.migrate()
    async with db.engine.connect() as conn:
        tables, job_columns, _ = await conn.run_sync(_shape)
        assert tables >= TABLES
        assert "event_time" in job_columns
        assert await conn.run_sync(differences, TABLES, columns=("event_time",)) == []
