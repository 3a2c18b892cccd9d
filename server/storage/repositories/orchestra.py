"""Orchestra in SQL (`server/domain/orchestra/records.py`): definitions, instances and
tokens with SQLAlchemy Core, inside the product's units of work.

`SqlOrchestraStore` wraps the `SqlStore`: its transaction is the store's (one
session), with `SqlOrchestraRepository` beside the product's repositories, so a step
and the jobs, events and audit entry it writes commit together.

Locking. `lock_instance` is the first statement of every step: on PostgreSQL a
`SELECT .. FOR UPDATE` (with SKIP LOCKED for the engine's own moves, so replicas
pass over instances another one is moving); on SQLite an UPDATE that takes the
database's write lock before anything is read (pysqlite begins the transaction at
the first write, so no stale snapshot can be upgraded). Tokens are taken with a
conditional DELETE whose row count says who won.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.jobs import SourceState
from server.domain.orchestra.definitions import DEFINITION_LISTING
from server.domain.orchestra.instances import JOB_ENDED
from server.domain.orchestra.records import (
    ACTIVE_STATUSES,
    CompensationEnding,
    DefinitionQuery,
    Instance,
    Pending,
    SagaStep,
    StoredDefinition,
    Token,
)
from server.domain.orchestra.sagas import PENDING
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.store import SqlStore, SqlUnitOfWork
from server.storage.tables import (
    JobRow,
    OrchestraDefinitionRow,
    OrchestraInstanceRow,
    OrchestraSagaStepRow,
    OrchestraTokenRow,
    SourceRow,
    TenantRow,
    table_of,
)

_definitions = table_of(OrchestraDefinitionRow)
_instances = table_of(OrchestraInstanceRow)
_tokens = table_of(OrchestraTokenRow)
_steps = table_of(OrchestraSagaStepRow)
_tenants = table_of(TenantRow)
_jobs = table_of(JobRow)
_sources = table_of(SourceRow)
SERVICE_SOURCE_NAME = "orchestra"
SERVICE_SOURCE_TYPE = "orchestra"
# Literal, not bound: a query matches a partial index only when its WHERE spells the
# index's predicate (tables.ORCHESTRA_*_PREDICATE) with constants.
_WAITING: sa.ColumnElement[str] = sa.literal_column("'waiting'")
_COMPENSATING: sa.ColumnElement[str] = sa.literal_column("'running'")
_SAGA: sa.ColumnElement[bool] = sa.literal_column("orchestra_instances.saga", sa.Boolean)
_JOB_ENDED: list[sa.ColumnElement[Any]] = [sa.literal_column(f"'{status}'") for status in JOB_ENDED]
_SOURCE_NAMESPACE = uuid5(NAMESPACE_URL, "orchestrator:orchestra-service-source")


_INSERT_INSTANCE = sa.insert(_instances)  # built once; the row is its parameters


def _job_status(job_id: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    """The status of the job `job_id` names, a correlated primary-key read."""
    return sa.select(_jobs.c.status).where(_jobs.c.job_id == job_id).scalar_subquery()


# The engine's hot reads and writes, built once with bound parameters (named `key_*`:
# a bound name may not be a column's in an UPDATE): building them per call cost
# 0.06-0.2 ms each of expression building and SQLAlchemy cache key, every step.
_DEFINITION_VERSION = sa.select(_definitions).where(
    _definitions.c.definition_id == sa.bindparam("key_definition_id"),
    _definitions.c.version == sa.bindparam("key_version"),
)
_DEFINITION_LATEST = (
    sa.select(_definitions)
    .where(_definitions.c.definition_id == sa.bindparam("key_definition_id"))
    .order_by(_definitions.c.version.desc())
    .limit(1)
)
_TOKENS_OF = (
    sa.select(_tokens)
    .where(_tokens.c.instance_id == sa.bindparam("key_instance_id"))
    .order_by(_tokens.c.created_at, _tokens.c.token_id)
)
_TOKEN = sa.select(_tokens).where(
    _tokens.c.token_id == sa.bindparam("key_token_id"),
    _tokens.c.tenant_id == sa.bindparam("key_tenant_id"),
)
# The tenant is a filter only (coalesce of a NOT NULL column: no index can serve it),
# so the primary key is the one way in. Compared plainly, PostgreSQL took
# ix_orchestra_instances_tenant_created (tenant_id, created_at, instance_id) whenever
# the statistics made the two cost alike, reading every index entry of the tenant
# (~190 buffers, 1.2 ms of each instance read and lock at 20,000 instances,
# auto_explain in bench/orchestra.py). A foreign instance is filtered before the lock.
_INSTANCE = sa.select(_instances).where(
    _instances.c.instance_id == sa.bindparam("key_instance_id"),
    sa.func.coalesce(_instances.c.tenant_id, "") == sa.bindparam("key_tenant_id"),
)
_INSTANCE_LOCKED = {skip: _INSTANCE.with_for_update(skip_locked=skip) for skip in (False, True)}
_SAGA_INSTANCE = _INSTANCE.where(_SAGA)
# SQLite: takes the write lock as it reads (see the module docstring).
_INSTANCE_LOCKED_SQLITE = (
    sa.update(_instances)
    .where(
        _instances.c.instance_id == sa.bindparam("key_instance_id"),
        _instances.c.tenant_id == sa.bindparam("key_tenant_id"),
    )
    .values(updated_at=_instances.c.updated_at)
    .returning(*_instances.c)
)
_UPDATE_INSTANCE = (
    sa.update(_instances)
    .where(_instances.c.instance_id == sa.bindparam("key_instance_id"))
    .values(
        status=sa.bindparam("key_status"),
        variables=sa.bindparam("key_variables"),
        incident=sa.bindparam("key_incident"),
        updated_at=sa.bindparam("key_updated_at"),
        ended_at=sa.bindparam("key_ended_at"),
    )
)
_TAKE_TOKEN = sa.delete(_tokens).where(
    _tokens.c.token_id == sa.bindparam("key_token_id"),
    _tokens.c.status == sa.bindparam("key_status"),
)
_INSERT_TOKENS = sa.insert(_tokens)
# The waiting tokens whose job has ended (ix_orchestra_tokens_job), each job's status
# read by key. Not a join: on a young or fast-growing database the statistics can say
# the jobs table holds a handful of rows, and PostgreSQL then scanned all of it
# against every waiting token (0.3-0.6 s a pass in bench/orchestra.py).
_ENDED_JOB_STATUS = _job_status(_tokens.c.job_id)
_ENDED_JOBS = (
    sa.select(
        _tokens.c.tenant_id,
        _tokens.c.instance_id,
        _tokens.c.token_id,
        _tokens.c.job_id,
        _ENDED_JOB_STATUS.label("status"),
    )
    .where(
        _tokens.c.status == _WAITING,
        _tokens.c.job_id.is_not(None),
        _ENDED_JOB_STATUS.in_(_JOB_ENDED),
    )
    .limit(sa.bindparam("key_limit"))
)
# Only the tokens of the hinted jobs: on PostgreSQL one array parameter (`= ANY`), so
# the statement is compiled once; an IN list was rendered anew on every pass, a bound
# cast per id (1.3 ms of CPU per pass of 30 ids, against 0.5 ms).
_ENDED_JOBS_OF = {
    "postgresql": _ENDED_JOBS.where(
        _tokens.c.job_id == sa.any_(sa.bindparam("key_job_ids", type_=postgresql.ARRAY(sa.String)))
    ),
    "sqlite": _ENDED_JOBS.where(_tokens.c.job_id.in_(sa.bindparam("key_job_ids", expanding=True))),
}


def _definition(definition_id: str, version: int | None) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The definition's version, or its newest when `version` is None: the statement
    and its bound values."""
    if version is None:
        return _DEFINITION_LATEST, {"key_definition_id": definition_id}
    return _DEFINITION_VERSION, {"key_definition_id": definition_id, "key_version": version}


def _keys(tenant_id: str, instance_id: str) -> dict[str, Any]:
    return {"key_tenant_id": tenant_id, "key_instance_id": instance_id}


def _instance_values(instance: Instance) -> dict[str, Any]:
    return {
        "instance_id": instance.instance_id,
        "tenant_id": instance.tenant_id,
        "definition_id": instance.definition_id,
        "definition_version": instance.definition_version,
        "status": instance.status,
        "variables": instance.variables,
        "incident": instance.incident,
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
        "ended_at": instance.ended_at,
        "saga": instance.saga,
        "trace_id": instance.trace_id,
        "trace_parent": instance.trace_parent,
    }


def _token_values(token: Token) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "instance_id": token.instance_id,
        "tenant_id": token.tenant_id,
        "node_id": token.node_id,
        "status": token.status,
        "job_id": token.job_id,
        "due_at": token.due_at,
        "created_at": token.created_at,
    }


class SqlOrchestraRepository:
    """`OrchestraRepository` on a unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def tenant_exists(self, tenant_id: str) -> bool:
        conn = await self._conn()
        statement = sa.select(_tenants.c.tenant_id).where(_tenants.c.tenant_id == tenant_id)
        return (await conn.execute(statement)).first() is not None

    async def definition(self, definition_id: str, version: int | None) -> sa.Row[Any] | None:
        conn = await self._conn()
        row: sa.Row[Any] | None = (await conn.execute(*_definition(definition_id, version))).first()
        return row

    async def insert_definition(self, definition: StoredDefinition) -> bool:
        conn = await self._conn()
        values = {
            "definition_id": definition.definition_id,
            "version": definition.version,
            "tenant_id": definition.tenant_id,
            "document": definition.document,
            "created_at": definition.created_at,
            "created_by": definition.created_by,
        }
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        result = await conn.execute(insert(_definitions).values(**values).on_conflict_do_nothing())
        return bool(result.rowcount == 1)

    async def insert_instance(self, instance: Instance) -> None:
        conn = await self._conn()
        await conn.execute(_INSERT_INSTANCE, _instance_values(instance))

    async def lock_instance(
        self, tenant_id: str, instance_id: str, *, skip_locked: bool = False
    ) -> sa.Row[Any] | None:
        conn = await self._conn()
        statement: sa.Executable = _INSTANCE_LOCKED_SQLITE
        if conn.dialect.name == "postgresql":
            statement = _INSTANCE_LOCKED[skip_locked]
        row: sa.Row[Any] | None = (
            await conn.execute(statement, _keys(tenant_id, instance_id))
        ).first()
        return row

    async def update_instance(
        self,
        instance_id: str,
        *,
        status: str,
        variables: str,
        incident: str | None,
        now: datetime,
    ) -> None:
        conn = await self._conn()
        await conn.execute(
            _UPDATE_INSTANCE,
            {
                "key_instance_id": instance_id,
                "key_status": status,
                "key_variables": variables,
                "key_incident": incident,
                "key_updated_at": now,
                "key_ended_at": None if status in ACTIVE_STATUSES else now,
            },
        )

    async def token(self, tenant_id: str, token_id: str) -> sa.Row[Any] | None:
        conn = await self._conn()
        return await _token(conn, tenant_id, token_id)

    async def tokens(self, instance_id: str) -> Sequence[sa.Row[Any]]:
        conn = await self._conn()
        rows: Sequence[sa.Row[Any]] = (
            await conn.execute(_TOKENS_OF, {"key_instance_id": instance_id})
        ).all()
        return rows

    async def take_token(self, token_id: str, status: str) -> bool:
        conn = await self._conn()
        result = await conn.execute(_TAKE_TOKEN, {"key_token_id": token_id, "key_status": status})
        return bool(result.rowcount == 1)

    async def insert_tokens(self, tokens: Sequence[Token]) -> None:
        if tokens:
            conn = await self._conn()
            await conn.execute(_INSERT_TOKENS, [_token_values(token) for token in tokens])

    async def delete_tokens(self, token_ids: Sequence[str]) -> None:
        if token_ids:
            conn = await self._conn()
            await conn.execute(sa.delete(_tokens).where(_tokens.c.token_id.in_(token_ids)))

    async def delete_instance_tokens(self, instance_id: str) -> None:
        conn = await self._conn()
        await conn.execute(sa.delete(_tokens).where(_tokens.c.instance_id == instance_id))

    async def own_jobs(self, owners: Mapping[str, str]) -> None:
        conn = await self._conn()
        for job_id, owner in owners.items():
            await conn.execute(sa.update(_jobs).where(_jobs.c.job_id == job_id).values(owner=owner))

    async def service_source(self, tenant_id: str, now: datetime) -> tuple[str, SourceState]:
        conn = await self._conn()
        found = await _source(conn, tenant_id)
        if found is not None:
            return found
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        await conn.execute(
            insert(_sources)
            .values(
                source_id=str(uuid5(_SOURCE_NAMESPACE, tenant_id)),
                tenant_id=tenant_id,
                project_id=None,
                name=SERVICE_SOURCE_NAME,
                source_type=SERVICE_SOURCE_TYPE,
                enabled=True,
                paused=False,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        created = await _source(conn, tenant_id)
        assert created is not None  # inserted, or a concurrent call's row
        return created

    # --- sagas ---

    async def insert_saga_steps(self, steps: Sequence[SagaStep]) -> None:
        if not steps:
            return
        conn = await self._conn()
        instance_id = steps[0].instance_id
        last = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(_steps.c.position), 0)).where(
                    _steps.c.instance_id == instance_id
                )
            )
        ).scalar_one()
        await conn.execute(
            sa.insert(_steps),
            [
                {
                    "step_id": step.step_id,
                    "instance_id": step.instance_id,
                    "tenant_id": step.tenant_id,
                    "position": last + i,
                    "node_id": step.node_id,
                    "job_type": step.job_type,
                    "job_id": step.job_id,
                    "compensation": step.compensation,
                    "status": "running",
                    "started_at": step.started_at,
                }
                for i, step in enumerate(steps, 1)
            ],
        )

    async def saga_steps(self, instance_id: str) -> Sequence[sa.Row[Any]]:
        conn = await self._conn()
        rows: Sequence[sa.Row[Any]] = (await conn.execute(_steps_of(instance_id))).all()
        return rows

    async def end_saga_step(
        self,
        step_id: str,
        *,
        status: str,
        ended_at: datetime,
        result: str | None,
        error: str | None,
    ) -> bool:
        conn = await self._conn()
        outcome = await conn.execute(
            sa.update(_steps)
            .where(_steps.c.step_id == step_id, _steps.c.status == "running")
            .values(status=status, ended_at=ended_at, result=result, error=error)
        )
        return bool(outcome.rowcount == 1)

    async def plan_compensations(self, orders: Mapping[str, int]) -> None:
        conn = await self._conn()
        for step_id, order in orders.items():
            await conn.execute(
                sa.update(_steps)
                .where(_steps.c.step_id == step_id)
                .values(compensation_order=order, compensation_status=PENDING)
            )

    async def start_compensation(self, step_id: str, job_id: str, now: datetime) -> None:
        conn = await self._conn()
        await conn.execute(
            sa.update(_steps)
            .where(_steps.c.step_id == step_id, _steps.c.compensation_status == PENDING)
            .values(
                compensation_status="running",
                compensation_job_id=job_id,
                compensation_started_at=now,
            )
        )

    async def end_compensation(
        self,
        step_id: str,
        *,
        expect: str,
        status: str,
        error: str | None,
        started_at: datetime | None,
        ended_at: datetime | None,
    ) -> bool:
        conn = await self._conn()
        values: dict[str, Any] = {
            "compensation_status": status,
            "compensation_error": error,
            "compensation_ended_at": ended_at,
        }
        if started_at is not None:
            values["compensation_started_at"] = started_at
        outcome = await conn.execute(
            sa.update(_steps)
            .where(_steps.c.step_id == step_id, _steps.c.compensation_status == expect)
            .values(**values)
        )
        return bool(outcome.rowcount == 1)

    async def end_pending_compensations(self, instance_id: str, status: str) -> int:
        conn = await self._conn()
        outcome = await conn.execute(
            sa.update(_steps)
            .where(_steps.c.instance_id == instance_id, _steps.c.compensation_status == PENDING)
            .values(compensation_status=status)
        )
        return int(outcome.rowcount)


def _steps_of(instance_id: str) -> sa.Select[Any]:
    return sa.select(_steps).where(_steps.c.instance_id == instance_id).order_by(_steps.c.position)


def _seconds(conn: AsyncConnection) -> sa.ColumnElement[Any]:
    """A finished instance's duration in seconds (NULL while it runs): microseconds on
    PostgreSQL, milliseconds on SQLite (its date functions keep three digits)."""
    ended, created = _instances.c.ended_at, _instances.c.created_at
    if conn.dialect.name == "postgresql":
        return sa.extract("epoch", ended - created)
    return (sa.func.julianday(ended) - sa.func.julianday(created)) * 86400.0


_SOURCE = sa.select(  # built once: tenant_id bound
    _sources.c.source_id, _sources.c.enabled, _sources.c.paused
).where(_sources.c.tenant_id == sa.bindparam("tenant_id"), _sources.c.name == SERVICE_SOURCE_NAME)


async def _source(conn: AsyncConnection, tenant_id: str) -> tuple[str, SourceState] | None:
    row = (await conn.execute(_SOURCE, {"tenant_id": tenant_id})).first()
    if row is None:
        return None
    return row.source_id, SourceState(enabled=row.enabled, paused=row.paused)


async def _token(conn: AsyncConnection, tenant_id: str, token_id: str) -> sa.Row[Any] | None:
    row: sa.Row[Any] | None = (
        await conn.execute(_TOKEN, {"key_token_id": token_id, "key_tenant_id": tenant_id})
    ).first()
    return row


class SqlOrchestraReads:
    """`OrchestraReads`: each call one pooled connection, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def definition(self, definition_id: str, version: int | None) -> sa.Row[Any] | None:
        async with self._db.read() as conn:
            row: sa.Row[Any] | None = (
                await conn.execute(*_definition(definition_id, version))
            ).first()
        return row

    async def definitions_page(
        self, query: DefinitionQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        where = []
        if query.definition_id is not None:
            where.append(_definitions.c.definition_id == query.definition_id)
        statement = keyset_select(_definitions, DEFINITION_LISTING, where, after=after, limit=limit)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows

    async def instance(self, tenant_id: str, instance_id: str) -> sa.Row[Any] | None:
        async with self._db.read() as conn:
            row: sa.Row[Any] | None = (
                await conn.execute(_INSTANCE, _keys(tenant_id, instance_id))
            ).first()
        return row

    async def instance_with_tokens(
        self, tenant_id: str, instance_id: str
    ) -> tuple[sa.Row[Any], Sequence[sa.Row[Any]]] | None:
        async with self._db.read() as conn:
            row = (await conn.execute(_INSTANCE, _keys(tenant_id, instance_id))).first()
            if row is None:
                return None
            tokens = (await conn.execute(_TOKENS_OF, {"key_instance_id": instance_id})).all()
        return row, tokens

    async def token(self, tenant_id: str, token_id: str) -> sa.Row[Any] | None:
        async with self._db.read() as conn:
            return await _token(conn, tenant_id, token_id)

    async def instances(
        self, tenant_id: str, *, definition_id: str | None, status: str | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        columns = (
            _instances.c.instance_id,
            _instances.c.definition_id,
            _instances.c.status,
            _instances.c.created_at,
        )
        statement: sa.Select[Any] = sa.select(*columns).where(_instances.c.tenant_id == tenant_id)
        if definition_id is not None:
            statement = statement.where(_instances.c.definition_id == definition_id)
        if status is not None:
            statement = statement.where(_instances.c.status == status)
        statement = statement.order_by(
            _instances.c.created_at.desc(), _instances.c.instance_id.desc()
        ).limit(limit)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows

    async def due_timers(self, now: datetime, limit: int) -> list[Pending]:
        statement = (
            sa.select(_tokens.c.tenant_id, _tokens.c.instance_id, _tokens.c.token_id)
            .where(
                _tokens.c.status == _WAITING,
                _tokens.c.due_at.is_not(None),
                _tokens.c.due_at <= sa.literal(now, _tokens.c.due_at.type),
            )
            .order_by(_tokens.c.due_at)
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [Pending(row.tenant_id, row.instance_id, row.token_id) for row in rows]

    async def ended_jobs(self, limit: int, job_ids: Sequence[str] | None = None) -> list[Pending]:
        async with self._db.read() as conn:
            if job_ids is None:
                result = await conn.execute(_ENDED_JOBS, {"key_limit": limit})
            else:
                statement = _ENDED_JOBS_OF[conn.dialect.name]
                result = await conn.execute(
                    statement, {"key_limit": limit, "key_job_ids": list(job_ids)}
                )
            rows = result.all()
        return [
            Pending(row.tenant_id, row.instance_id, row.token_id, row.job_id, row.status)
            for row in rows
        ]

    async def ended_compensations(self, limit: int) -> list[CompensationEnding]:
        job_status = _job_status(_steps.c.compensation_job_id)  # by key, as ended_jobs
        statement = (
            sa.select(
                _steps.c.tenant_id,
                _steps.c.instance_id,
                _steps.c.step_id,
                _steps.c.compensation_job_id,
                job_status.label("status"),
                _instances.c.trace_id,
                _instances.c.trace_parent,
            )
            .join(_instances, _instances.c.instance_id == _steps.c.instance_id)
            .where(
                _steps.c.compensation_status == _COMPENSATING,
                _steps.c.compensation_job_id.is_not(None),
                job_status.in_(_JOB_ENDED),
            )
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            CompensationEnding(
                row.tenant_id,
                row.instance_id,
                row.step_id,
                row.compensation_job_id,
                row.status,
                row.trace_id,
                row.trace_parent,
            )
            for row in rows
        ]

    async def saga(
        self, tenant_id: str, instance_id: str
    ) -> tuple[sa.Row[Any], Sequence[sa.Row[Any]]] | None:
        async with self._db.read() as conn:
            row = (await conn.execute(_SAGA_INSTANCE, _keys(tenant_id, instance_id))).first()
            if row is None:
                return None
            steps = (await conn.execute(_steps_of(instance_id))).all()
        return row, steps

    async def saga_counts(self, tenant_id: str) -> Sequence[sa.Row[Any]]:
        async with self._db.read() as conn:
            statement = (
                sa.select(
                    _instances.c.definition_id,
                    _instances.c.status,
                    sa.func.count().label("instances"),
                    sa.func.sum(_seconds(conn)).label("seconds"),
                )
                .where(_instances.c.tenant_id == tenant_id, _SAGA)
                .group_by(_instances.c.definition_id, _instances.c.status)
                .order_by(_instances.c.definition_id, _instances.c.status)
            )
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows


class SqlOrchestraUnit:
    """The product's unit of work (`base`) with the Orchestra repository on its session."""

    def __init__(self, base: SqlUnitOfWork) -> None:
        self.base = base
        self.orchestra = SqlOrchestraRepository(base.session)


class SqlOrchestraStore:
    """`OrchestraStore` over the product's `SqlStore` (`base`)."""

    def __init__(self, base: SqlStore) -> None:
        self.base = base
        self.orchestra = SqlOrchestraReads(base.db)
        self.parallel_writes = not base.db.is_sqlite

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlOrchestraUnit]:
        async with self.base.transaction() as uow:
            yield SqlOrchestraUnit(uow)
