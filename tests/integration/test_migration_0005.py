"""Migration 0005 (jobs, events, quotas, quota_minutes) on SQLite and PostgreSQL.

The migration must build exactly the tables the row classes declare (autogenerate
finds nothing to change), the partial indexes with their predicates on both
backends, an idempotency key unique per tenant only when set, a lease query that
PostgreSQL answers from `ix_jobs_ready`, and a way down and up again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.storage.db import Database
from server.storage.tables import JOBS_READY_PREDICATE, JobRow, table_of
from tests.conftest import BACKENDS
from tests.support.migrations import differences, index_sql, migrated, run_alembic, table_names

TABLES = {"jobs", "events", "quotas", "quota_minutes"}
PARTIAL_INDEXES = {
    "ix_jobs_ready": "status IN ('queued', 'throttled', 'failed')",
    "uq_jobs_tenant_idempotency_key": "idempotency_key IS NOT NULL",
    "ix_jobs_lease_expiry": "status = 'leased'",
    "ix_jobs_finished": "finished_at IS NOT NULL",
}
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    async with migrated(request.param, tmp_path) as database:
        yield database


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
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []


async def test_partial_indexes_carry_their_predicates(db: Database) -> None:
    async with db.engine.connect() as conn:
        indexes = await conn.run_sync(index_sql, "jobs")
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
        await conn.run_sync(run_alembic, "downgrade", "0004")
        assert TABLES.isdisjoint(await conn.run_sync(table_names))
    await db.migrate()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []
