"""What every migration test needs: a fresh database of its own migrated to head (a
SQLite file or a new PostgreSQL database, dropped after), alembic up/down on a live
connection, the schema differences between the migrations and the row classes for
some tables, and the database's own view of tables and indexes.

Sync helpers take a `sqlalchemy.Connection` and are called with `run_sync`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from server.storage.db import Database, alembic_config
from tests.conftest import _create_pg_database, _drop_pg_database


@asynccontextmanager
async def migrated(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own on `backend` ("sqlite" or "postgres"), migrated to head."""
    name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
    else:
        name, url = await _create_pg_database()
    database = Database(url)
    try:
        await database.migrate()
        yield database
    finally:
        await database.dispose()
        if name is not None:
            await _drop_pg_database(name)


def differences(
    connection: sa.Connection, tables: Collection[str], *, columns: Collection[str] = ()
) -> list[object]:
    """Alembic's differences between the migrated schema and `SQLModel.metadata` that
    touch one of `tables` (or name one of `columns`): empty when the migrations build
    exactly what the row classes declare."""
    context = MigrationContext.configure(connection)
    return [
        diff
        for diff in compare_metadata(context, SQLModel.metadata)
        if any(f"'{table}'" in repr(diff) or f"name='{table}'" in repr(diff) for table in tables)
        or any(column in repr(diff) for column in columns)
    ]


def run_alembic(connection: sa.Connection, action: str, revision: str) -> None:
    """`alembic <action> <revision>` ("upgrade"/"downgrade") on `connection`."""
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


def table_names(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def index_sql(connection: sa.Connection, table: str) -> dict[str, str]:
    """Each index of `table` as the database itself prints it (name -> definition)."""
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
            {"t": table},
        )
    else:
        rows = connection.execute(
            sa.text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
                " AND sql IS NOT NULL"
            ),
            {"t": table},
        )
    return {str(name): str(sql) for name, sql in rows}
