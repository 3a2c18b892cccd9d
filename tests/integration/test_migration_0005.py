"""Migration 0005 (jobs, events, quotas, quota_minutes) on SQLite and PostgreSQL.

The migration must build exactly the tables the row classes declare (autogenerate
finds nothing to change), the partial indexes with their predicates on both
backends, an idempotency key unique per tenant only when set, a lease query that
PostgreSQL answers from `ix_jobs_ready`, and a way down and up again.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.storage.db import Database, alembic_config
from server.storage.tables import JOBS_READY_PREDICATE, JobRow, table_of

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TABLES = {"jobs", "events", "quotas", "quota_minutes"}
PARTIAL_INDEXES = {
    "ix_jobs_ready": "status IN ('queued', 'throttled', 'failed')",
    "uq_jobs_tenant_idempotency_key": "idempotency_key IS NOT NULL",
    "ix_jobs_lease_expiry": "status = 'leased'",
    "ix_jobs_finished": "finished_at IS NOT NULL",
}
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}")
        try:
            await database.migrate()
            yield database
        finally:
            await database.dispose()
        return
    name = f"orch_migrate_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    database = Database(url.render_as_string(hide_password=False))
    try:
        await database.migrate()
        yield database
    finally:
        await database.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _differences(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return [
        diff
        for diff in compare_metadata(context, SQLModel.metadata)
        if any(f"'{table}'" in repr(diff) or f"name='{table}'" in repr(diff) for table in TABLES)
    ]


def _alembic(connection: sa.Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _index_sql(connection: sa.Connection) -> dict[str, str]:
    """Each index of `jobs` as the database itself prints it."""
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'")
        )
    else:
        rows = connection.execute(
            sa.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
                " AND sql IS NOT NULL"
            )
        )
    return {str(name): str(sql) for name, sql in rows}


def _job(job_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "job_id": job_id,
        "tenant_id": "t-1",
        "job_type": "scan",
        "source_id": "s-1",
        "status": "queued",
        "priority": 0,
        "attempts": 0,
        "max_attempts": 3,
        "backoff_initial_s": 1.0,
        "backoff_max_s": 300.0,
        "backoff_multiplier": 2.0,
        "backoff_jitter": 0.2,
        "run_at": T0,
        "next_eligible_at": T0,
        "created_at": T0,
        "updated_at": T0,
        "idempotency_key": None,
    }
    row.update(values)
    return row


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []


async def test_partial_indexes_carry_their_predicates(db: Database) -> None:
    async with db.engine.connect() as conn:
        indexes = await conn.run_sync(_index_sql)
    postgres = db.engine.dialect.name == "postgresql"
    for name, predicate in PARTIAL_INDEXES.items():
        # PostgreSQL prints its parse tree back: IN becomes = ANY (ARRAY[...]).
        expected = (
            {
                "ix_jobs_ready": "WHERE ((status)::text = ANY ((ARRAY['queued'::character "
                "varying, 'throttled'::character varying, 'failed'::character varying])"
                "::text[]))",
                "uq_jobs_tenant_idempotency_key": "WHERE (idempotency_key IS NOT NULL)",
                "ix_jobs_lease_expiry": "WHERE ((status)::text = 'leased'::text)",
                "ix_jobs_finished": "WHERE (finished_at IS NOT NULL)",
            }[name]
            if postgres
            else f"WHERE {predicate}"
        )
        assert indexes[name].endswith(expected), (name, indexes[name])
    ready = "(tenant_id, job_type, priority DESC, next_eligible_at, job_id)"
    assert ready in indexes["ix_jobs_ready"]


async def test_an_idempotency_key_is_unique_per_tenant_only_when_set(db: Database) -> None:
    jobs = table_of(JobRow)
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.insert(jobs),
            [
                _job("j-1", idempotency_key="k"),
                _job("j-2", idempotency_key="k", tenant_id="t-2"),
                _job("j-3"),
                _job("j-4"),
            ],
        )
    with pytest.raises(sa.exc.IntegrityError):
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(jobs), [_job("j-5", idempotency_key="k")])
    async with db.engine.connect() as conn:
        ids = (await conn.execute(sa.select(jobs.c.job_id).order_by(jobs.c.job_id))).scalars()
        assert list(ids) == ["j-1", "j-2", "j-3", "j-4"]


@pytest.mark.parametrize(
    "db", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_the_one_statement_lease_reads_the_ready_index(db: Database) -> None:
    """The lease's predicate matches the partial index, which also gives its order."""
    lease = f"""
        WITH c AS MATERIALIZED (
            SELECT job_id FROM jobs
            WHERE tenant_id = 't-1' AND job_type = 'scan' AND {JOBS_READY_PREDICATE}
              AND next_eligible_at <= now()
            ORDER BY priority DESC, next_eligible_at, job_id
            LIMIT 10 FOR UPDATE SKIP LOCKED)
        UPDATE jobs SET status = 'leased', attempts = jobs.attempts + 1
        FROM c WHERE jobs.job_id = c.job_id RETURNING jobs.job_id"""
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = (await conn.execute(sa.text("EXPLAIN " + lease))).scalars().all()
    text = "\n".join(plan)
    assert "ix_jobs_ready" in text, text
    assert "Sort" not in text, text


async def test_the_migration_goes_down_and_up(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_alembic, "downgrade", "0004")
        assert TABLES.isdisjoint(await conn.run_sync(_tables))
    await db.migrate()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []
