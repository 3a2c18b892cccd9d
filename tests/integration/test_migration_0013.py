"""Migration 0013 (jobs.trace_parent, issue 13 tracing) on SQLite and PostgreSQL: it
builds what JobRow declares (a nullable VARCHAR(55)) and goes down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.migrations import differences, migrated, run_alembic


def _columns(connection: sa.Connection) -> dict[str, object]:
    return {column["name"]: column for column in sa.inspect(connection).get_columns("jobs")}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_trace_parent_is_a_nullable_column_that_goes_down_and_up(
    backend: str, tmp_path: Path
) -> None:
    async with migrated(backend, tmp_path) as db, db.engine.connect() as conn:
        assert await conn.run_sync(differences, ["jobs"], columns=["trace_parent"]) == []
        column = (await conn.run_sync(_columns))["trace_parent"]
        assert isinstance(column, dict)
        assert column["nullable"] is True
        assert isinstance(column["type"], sa.String) and column["type"].length == 55
        await conn.run_sync(run_alembic, "downgrade", "0012")
        assert "trace_parent" not in await conn.run_sync(_columns)
        await conn.run_sync(run_alembic, "upgrade", "head")
        assert "trace_parent" in await conn.run_sync(_columns)
        await conn.commit()
