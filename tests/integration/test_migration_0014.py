"""Migration 0014 (jobs.trace_id, orchestra_instances.trace_id and .trace_parent:
critic findings 4 and 11) on SQLite and PostgreSQL: it builds what JobRow and
OrchestraInstanceRow declare (nullable VARCHARs) and goes down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.migrations import differences, migrated, run_alembic

ADDED = {"jobs": {"trace_id": 64}, "orchestra_instances": {"trace_id": 64, "trace_parent": 55}}


def _columns(connection: sa.Connection, table: str) -> dict[str, dict[str, object]]:
    inspector = sa.inspect(connection)
    return {column["name"]: dict(column) for column in inspector.get_columns(table)}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_trace_columns_are_nullable_and_go_down_and_up(backend: str, tmp_path: Path) -> None:
    async with migrated(backend, tmp_path) as db, db.engine.connect() as conn:
        for table, added in ADDED.items():
            assert await conn.run_sync(differences, [table], columns=sorted(added)) == []
            columns = await conn.run_sync(_columns, table)
            for name, length in added.items():
                assert columns[name]["nullable"] is True
                kind = columns[name]["type"]
                assert isinstance(kind, sa.String) and kind.length == length, (table, name)
        await conn.run_sync(run_alembic, "downgrade", "0013")
        for table, added in ADDED.items():
            assert not set(added) & set(await conn.run_sync(_columns, table))
        assert "trace_parent" in await conn.run_sync(_columns, "jobs")  # 0013's stays
        await conn.run_sync(run_alembic, "upgrade", "head")
        for table, added in ADDED.items():
            assert set(added) <= set(await conn.run_sync(_columns, table))
        await conn.commit()
