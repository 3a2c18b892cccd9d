"""Migration 0009 (orchestra_definitions, orchestra_instances, orchestra_tokens) on
SQLite and PostgreSQL: exactly the tables the row classes declare (autogenerate finds
nothing to change), the tokens' partial indexes with their predicates, queries that
use them, and a way down and up again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.storage.db import Database
from tests.conftest import BACKENDS
from tests.support.migrations import differences, index_sql, migrated, run_alembic, table_names

TABLES = {"orchestra_definitions", "orchestra_instances", "orchestra_tokens"}


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of its own, migrated to head."""
    async with migrated(request.param, tmp_path) as database:
        yield database


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(table_names) >= TABLES
        assert await conn.run_sync(differences, TABLES) == []


async def test_partial_indexes_carry_their_predicates(db: Database) -> None:
    async with db.engine.connect() as conn:
        indexes = await conn.run_sync(index_sql, "orchestra_tokens")
    if db.engine.dialect.name == "postgresql":
        expected = {
            "ix_orchestra_tokens_job": "WHERE (((status)::text = 'waiting'::text) AND "
            "(job_id IS NOT NULL))",
            "ix_orchestra_tokens_due": "WHERE (((status)::text = 'waiting'::text) AND "
            "(due_at IS NOT NULL))",
        }
    else:
        expected = {
            "ix_orchestra_tokens_job": "WHERE status = 'waiting' AND job_id IS NOT NULL",
            "ix_orchestra_tokens_due": "WHERE status = 'waiting' AND due_at IS NOT NULL",
        }
    for name, predicate in expected.items():
        assert indexes[name].endswith(predicate), (name, indexes[name])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_sqlite_plans_use_the_partial_indexes(db: Database) -> None:
    """The runner's queries spell the predicates with constants, so SQLite picks them."""
    due = (
        "EXPLAIN QUERY PLAN SELECT tenant_id, instance_id, token_id FROM orchestra_tokens"
        " WHERE orchestra_tokens.status = 'waiting' AND orchestra_tokens.due_at IS NOT NULL"
        " AND orchestra_tokens.due_at <= '2026-11-30' ORDER BY orchestra_tokens.due_at"
    )
    jobs = (
        "EXPLAIN QUERY PLAN SELECT orchestra_tokens.token_id FROM orchestra_tokens JOIN jobs"
        " ON jobs.job_id = orchestra_tokens.job_id WHERE orchestra_tokens.status = 'waiting'"
        " AND orchestra_tokens.job_id IS NOT NULL"
        " AND jobs.status IN ('succeeded', 'dead_lettered', 'canceled')"
    )
    async with db.engine.connect() as conn:
        due_plan = " ".join(str(row[-1]) for row in await conn.execute(sa.text(due)))
        jobs_plan = " ".join(str(row[-1]) for row in await conn.execute(sa.text(jobs)))
    assert "ix_orchestra_tokens_due" in due_plan, due_plan
    assert "ix_orchestra_tokens_job" in jobs_plan, jobs_plan


async def test_down_and_up_again(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(run_alembic, "downgrade", "0008")
        assert not (await conn.run_sync(table_names)) & TABLES
        await conn.run_sync(run_alembic, "upgrade", "0009")
        assert await conn.run_sync(table_names) >= TABLES
