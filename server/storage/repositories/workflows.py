"""The workflow views in SQL (`server/domain/workflows.py` `WorkflowReads`): definitions
available to a tenant and the tenant's runs, read with SQLAlchemy Core.

- `workflows_page`: the distinct definition ids shared (tenant_id NULL) or scoped to
  the tenant after the page position (the primary key's order serves it), then one
  statement for those ids' versions and one for their latest documents.
- `runs_page`: the instance rows' listed columns (never the variables) in
  RUN_LISTING's order, served by `ix_orchestra_instances_tenant_created` (or
  `..._tenant_definition` with a definition filter), read backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.units import Store
from server.domain.workflows import RUN_LISTING, RunQuery, WorkflowQuery
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.store import SqlStore
from server.storage.tables import OrchestraDefinitionRow, OrchestraInstanceRow, table_of

_definitions = table_of(OrchestraDefinitionRow)
_instances = table_of(OrchestraInstanceRow)
_RUN_COLUMNS = (
    _instances.c.instance_id,
    _instances.c.definition_id,
    _instances.c.definition_version,
    _instances.c.status,
    _instances.c.created_at,
    _instances.c.ended_at,
)


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """`WorkflowRecord`: one definition id with its versions, ascending."""

    definition_id: str
    versions: tuple[int, ...]
    tenant_id: str | None
    document: str
    updated_at: datetime


def workflow_reads(store: Store) -> SqlWorkflowReads:
    """The workflow views of the product's store (the SQL store: the only one)."""
    if not isinstance(store, SqlStore):
        raise TypeError(f"the workflow views read the SQL store, got {type(store)!r}")
    return SqlWorkflowReads(store.db)


class SqlWorkflowReads:
    """`WorkflowReads`: each call one pooled connection, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def workflows_page(
        self, query: WorkflowQuery, after: tuple[Any, ...] | None, limit: int
    ) -> list[WorkflowRow]:
        column = _definitions.c.definition_id
        available = sa.or_(
            _definitions.c.tenant_id.is_(None), _definitions.c.tenant_id == query.tenant_id
        )
        ids_statement = sa.select(column).where(available).group_by(column)
        if after is not None:
            ids_statement = ids_statement.where(column > sa.literal(after[0], column.type))
        ids_statement = ids_statement.order_by(column).limit(limit + 1)
        async with self._db.read() as conn:
            ids = [row[0] for row in (await conn.execute(ids_statement)).all()]
            if not ids:
                return []
            versions = (
                await conn.execute(
                    sa.select(
                        column,
                        _definitions.c.version,
                        _definitions.c.tenant_id,
                        _definitions.c.created_at,
                    )
                    .where(column.in_(ids))
                    .order_by(column, _definitions.c.version)
                )
            ).all()
            latest: dict[str, Any] = {}
            numbers: dict[str, list[int]] = {}
            for row in versions:
                latest[row.definition_id] = row  # ascending: the last one is the latest
                numbers.setdefault(row.definition_id, []).append(int(row.version))
            wanted = sa.or_(
                *(
                    sa.and_(column == row.definition_id, _definitions.c.version == row.version)
                    for row in latest.values()
                )
            )
            documents = {
                row.definition_id: row.document
                for row in (
                    await conn.execute(sa.select(column, _definitions.c.document).where(wanted))
                ).all()
            }
        return [
            WorkflowRow(
                definition_id=definition_id,
                versions=tuple(numbers[definition_id]),
                tenant_id=latest[definition_id].tenant_id,
                document=documents[definition_id],
                updated_at=latest[definition_id].created_at,
            )
            for definition_id in ids
            if definition_id in latest
        ]

    async def runs_page(
        self, query: RunQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        where = [_instances.c.tenant_id == query.tenant_id]
        if query.definition_id is not None:
            where.append(_instances.c.definition_id == query.definition_id)
        if query.status is not None:
            where.append(_instances.c.status == query.status)
        statement: sa.Select[Any] = keyset_select(
            _instances, RUN_LISTING, where, after=after, limit=limit
        ).with_only_columns(*_RUN_COLUMNS)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows
