"""Migration 0007 (jobs.owner, the owned-job indexes, pack_runs, pack_run_jobs) on
SQLite and PostgreSQL: it builds exactly what the row classes declare, its partial
indexes carry their predicates, and the engine's query for runs with ended jobs
reads the running-jobs index."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.storage.db import Database
from server.storage.repositories.pack_runs import SqlPackRunReads, ended_jobs_query
from tests.integration.test_migration_0005 import db  # noqa: F401  (the migrated database)

TABLES = ("pack_runs", "pack_run_jobs")
JOB_PARTS = ("'owner'", "ix_jobs_pack_run", "ix_jobs_owner")


def _differences(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return [
        diff
        for diff in compare_metadata(context, SQLModel.metadata)
        if any(f"'{table}'" in repr(diff) for table in TABLES)
        or any(part in repr(diff) for part in JOB_PARTS)
    ]


def _indexes(connection: sa.Connection) -> dict[str, str]:
    if connection.dialect.name == "postgresql":
        rows = connection.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes"))
    else:
        rows = connection.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        )
    return {str(name): str(sql) for name, sql in rows}


async def test_the_migration_builds_what_the_rows_declare(db: Database) -> None:  # noqa: F811
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert set(TABLES) <= tables
        assert await conn.run_sync(_differences) == []
        indexes = await conn.run_sync(_indexes)
    postgres = db.engine.dialect.name == "postgresql"
    expected = {
        "ix_jobs_pack_run": "WHERE (pack_run_id IS NOT NULL)"
        if postgres
        else "WHERE pack_run_id IS NOT NULL",
        "ix_jobs_owner": "WHERE (owner IS NOT NULL)" if postgres else "WHERE owner IS NOT NULL",
        "ix_pack_run_jobs_running": "WHERE ((status)::text = 'running'::text)"
        if postgres
        else "WHERE status = 'running'",
    }
    for name, predicate in expected.items():
        assert indexes[name].endswith(predicate), (name, indexes[name])
    assert "(tenant_id, created_at, pack_run_id)" in indexes["ix_pack_runs_tenant_created_id"]


async def test_runs_with_ended_jobs_are_found_by_the_running_index(db: Database) -> None:  # noqa: F811
    reads = SqlPackRunReads(db)
    assert await reads.with_ended_jobs(10) == []
    statement = _compiled_ended_query(db.engine.dialect)
    async with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = (await conn.execute(sa.text("EXPLAIN " + statement))).scalars().all()
        else:
            rows = (await conn.execute(sa.text("EXPLAIN QUERY PLAN " + statement))).all()
            plan = [str(row[-1]) for row in rows]
    text = "\n".join(plan)
    assert "ix_pack_run_jobs_running" in text, text


def _compiled_ended_query(dialect: sa.Dialect) -> str:
    """The engine's query (SqlPackRunReads.with_ended_jobs) as SQL text with literals."""
    return str(
        ended_jobs_query(10).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    )
