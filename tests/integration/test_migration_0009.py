"""Migration 0009 (orchestra_definitions, orchestra_instances, orchestra_tokens) on
SQLite and PostgreSQL: exactly the tables the row classes declare (autogenerate finds
nothing to change), the tokens' partial indexes with their predicates, queries that
use them, and a way down and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.storage.db import Database, alembic_config

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TABLES = {"orchestra_definitions", "orchestra_instances", "orchestra_tokens"}


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
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


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _index_sql(connection: sa.Connection) -> dict[str, str]:
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orchestra_tokens'"
            )
        )
    else:
        rows = connection.execute(
            sa.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name = 'orchestra_tokens' AND sql IS NOT NULL"
            )
        )
    return {str(name): str(sql) for name, sql in rows}


def _alembic(connection: sa.Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_differences) == []


async def test_partial_indexes_carry_their_predicates(db: Database) -> None:
    async with db.engine.connect() as conn:
        indexes = await conn.run_sync(_index_sql)
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
        await conn.run_sync(_alembic, "downgrade", "0008")
        assert not (await conn.run_sync(_tables)) & TABLES
        await conn.run_sync(_alembic, "upgrade", "0009")
        assert await conn.run_sync(_tables) >= TABLES
