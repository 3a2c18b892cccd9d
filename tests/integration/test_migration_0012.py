"""Migration 0012 (orchestra sagas) on SQLite and PostgreSQL: exactly what the row
classes declare (autogenerate finds nothing to change), the partial indexes with
their predicates, instances from before it are not sagas, and a way down and up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.storage.tables import OrchestraInstanceRow, table_of
from tests.conftest import BACKENDS
from tests.support.migrations import differences, index_sql, migrated, run_alembic, table_names

_instances = table_of(OrchestraInstanceRow)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_0012(backend: str, tmp_path: Path) -> None:
    async with migrated(backend, tmp_path) as db:
        async with db.engine.begin() as conn:
            found = await conn.run_sync(
                differences, ["orchestra_saga_steps", "orchestra_instances"], columns=["saga"]
            )
            assert found == []
            steps = await conn.run_sync(index_sql, "orchestra_saga_steps")
            instances = await conn.run_sync(index_sql, "orchestra_instances")
        compensating = steps["ix_orchestra_saga_steps_compensation"]
        assert "(compensation_job_id) WHERE" in compensating.replace('"', "")
        assert "compensation_status" in compensating and "'running'" in compensating
        assert instances["ix_orchestra_instances_saga"].endswith("WHERE saga")

        async with db.engine.begin() as conn:
            await conn.run_sync(run_alembic, "downgrade", "0011")
            assert "orchestra_saga_steps" not in await conn.run_sync(table_names)
            now = datetime.now(UTC)
            await conn.execute(
                sa.text(
                    "INSERT INTO orchestra_instances (instance_id, tenant_id, definition_id,"
                    " definition_version, status, variables, created_at, updated_at)"
                    " VALUES ('i-1', 't', 'd', 1, 'running', '{}', :now, :now)"
                ),
                {"now": now},
            )
            await conn.run_sync(run_alembic, "upgrade", "head")
            saga = (
                await conn.execute(
                    sa.select(_instances.c.saga).where(_instances.c.instance_id == "i-1")
                )
            ).scalar()
            assert saga is False
            assert "orchestra_saga_steps" in await conn.run_sync(table_names)
