"""Jobs in SQL: the repositories `server/domain/jobs.py` describes, as SQLAlchemy Core
statements (DESIGN §8: list pages and batch inserts are hot paths). No commits here;
a unit of work commits.

- Insert: one multi-row `INSERT .. ON CONFLICT (tenant_id, idempotency_key) WHERE
  idempotency_key IS NOT NULL DO NOTHING RETURNING job_id` (PostgreSQL and SQLite
  alike), so two concurrent enqueues of one key cannot both insert; the loser's
  missing id tells the domain to read the winner's row.
- Listing: keyset over (created_at DESC, job_id DESC), served backwards by
  `ix_jobs_tenant_created_id`; never OFFSET.
- Summary: one `GROUP BY job_type, status` with `count(*)` and `max(updated_at)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.audit import AuditEntry
from server.domain.errors import Aborted, NotFound
from server.domain.events import NewEvent
from server.domain.job_endings import JobEnding, owned
from server.domain.job_states import REPLAYED_EVENT, JobStatus
from server.domain.jobs import JOB_LISTING, Job, JobQuery, SourceState, StatusCount, StepRun
from server.domain.leasing import QuotaState
from server.domain.resources import JOB
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.repositories.events import EVENT_COLUMNS, event_values
from server.storage.repositories.leases import (
    QUOTA_STATES,
    quota_state,
    quota_state_params,
    release_slots,
)
from server.storage.tables import (
    AuditEntryRow,
    DeadLetterEntryRow,
    EventRow,
    JobRow,
    OrchestraSagaStepRow,
    OrchestraTokenRow,
    PackRunJobRow,
    PackRunRow,
    SourceRow,
    table_of,
)
from server.storage.unnest import UnnestInsert

_table = table_of(JobRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
_sources = table_of(SourceRow)
_saga_steps = table_of(OrchestraSagaStepRow)
_tokens = table_of(OrchestraTokenRow)
_pack_runs = table_of(PackRunRow)
_dead_letters = table_of(DeadLetterEntryRow)
_pack_steps = table_of(PackRunJobRow)
_KEY_PRESENT = _table.c.idempotency_key.is_not(None)
_CANCELED = JobStatus.CANCELED.value


_RETRY_CHAIN_MAX = 1000  # hops followed; a run is retried once, so a chain only grows
_REPLAY_CHAIN_MAX = 1000  # replays of replays followed to a dead-letter entry


async def _newest_retries(
    conn: AsyncConnection, tenant_id: str, run_ids: set[str]
) -> dict[str, tuple[str, str]]:
    """For each run of `run_ids`, the newest run of its chain of retries (itself when it
    was not retried) and that run's status: one primary-key read per hop."""
    newest = {run_id: run_id for run_id in run_ids}
    status: dict[str, str] = {}
    frontier = set(run_ids)
    for _ in range(_RETRY_CHAIN_MAX):
        if not frontier:
            break
        rows = (
            await conn.execute(
                sa.select(
                    _pack_runs.c.pack_run_id, _pack_runs.c.status, _pack_runs.c.retried_by
                ).where(
                    _pack_runs.c.pack_run_id.in_(sorted(frontier)),
                    _pack_runs.c.tenant_id == tenant_id,
                )
            )
        ).all()
        moved = {row.pack_run_id: row.retried_by for row in rows if row.retried_by}
        status.update({row.pack_run_id: row.status for row in rows})
        for start, current in newest.items():
            if current in moved:
                newest[start] = moved[current]
        frontier = set(moved.values())
    return {start: (run_id, status.get(run_id, "")) for start, run_id in newest.items()}


def _where(query: JobQuery) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = [_table.c.tenant_id == query.tenant_id]
    for column, value in (
        (_table.c.project_id, query.project_id),
        (_table.c.status, query.status),
        (_table.c.job_type, query.job_type),
        (_table.c.source_id, query.source_id),
    ):
        if value is not None:
            clauses.append(column == value)
    return clauses


def _one(tenant_id: str, job_id: str, project_id: str | None) -> sa.Select[Any]:
    # The tenant a filter only, so the primary key is the one way in (see _INSTANCE in
    # repositories/orchestra.py: ix_jobs_tenant_created_id would read the tenant's jobs).
    clauses = [_table.c.job_id == job_id, sa.func.coalesce(_table.c.tenant_id, "") == tenant_id]
    if project_id is not None:
        clauses.append(_table.c.project_id == project_id)
    return sa.select(_table).where(*clauses)


_COLUMNS = tuple(field.name for field in fields(Job))
_KEYS = ["tenant_id", "idempotency_key"]
# Built once: executed with a list of rows, SQLAlchemy's "insertmanyvalues" renders one
# multi-row VALUES statement per 1,000 rows from the cached compilation (compiling a
# 1,000-row `.values([...])` costs ~1 s).
_INSERT = {
    "postgresql": postgresql.insert(_table)
    .on_conflict_do_nothing(index_elements=_KEYS, index_where=_KEY_PRESENT)
    .returning(_table.c.job_id),
    "sqlite": sqlite.insert(_table)
    .on_conflict_do_nothing(index_elements=_KEYS, index_where=_KEY_PRESENT)
    .returning(_table.c.job_id),
}


# Built once (bound tenant_id, source_ids, project_id), not per enqueue.
_SOURCE_STATES = sa.select(_sources.c.source_id, _sources.c.enabled, _sources.c.paused).where(
    _sources.c.tenant_id == sa.bindparam("tenant_id"),
    _sources.c.source_id.in_(sa.bindparam("source_ids", expanding=True)),
)
_PROJECT_SOURCE_STATES = _SOURCE_STATES.where(_sources.c.project_id == sa.bindparam("project_id"))


def job_values(job: Job) -> dict[str, Any]:
    """The column values of `job` (a flat copy; `dataclasses.asdict` deep-copies)."""
    return {name: getattr(job, name) for name in _COLUMNS}


# PostgreSQL: `INSERT .. SELECT .. FROM unnest(...)`, one array per column whose values
# differ in the batch and one scalar per column that holds one value in every row
# (storage/unnest.py): a fixed number of bind parameters for any number of rows.
_UNNEST = UnnestInsert(
    _table,
    _COLUMNS,
    row_column="job_id",
    suffix="ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL "
    "DO NOTHING RETURNING job_id",
)


async def insert_jobs(conn: AsyncConnection, jobs: Sequence[Job]) -> set[str]:
    """The one INSERT of `jobs` (one statement): rows whose key the tenant holds are
    skipped; the ids it inserted."""
    if conn.dialect.name == "postgresql":
        statement, parameters = _UNNEST.bind(
            {name: [getattr(job, name) for job in jobs] for name in _COLUMNS}
        )
        result = await conn.execute(statement, parameters)
    else:
        # SQLite binds at most 32,766 parameters per statement: 1,000 rows of every
        # column would not fit one. Columns NULL in every row (a new job's lease,
        # result, error, trace ids with tracing off) are left out; NULL is their default.
        rows = [job_values(job) for job in jobs]
        unset = [name for name in _COLUMNS if all(row[name] is None for row in rows)]
        for row in rows:
            for name in unset:
                del row[name]
        result = await conn.execute(_INSERT[conn.dialect.name], rows)
    return {row.job_id for row in result}


# One plain enqueue (PostgreSQL): one statement, run in autocommit, that inserts the
# job, its event and its audit entry when the job is plainly admissible: its source
# enabled and unpaused (in the caller's project), no quota for its job type, its
# idempotency key free. Otherwise nothing is written and the caller takes the
# transactional path, which says why (404, 409, a repeat) or throttles. One round trip
# instead of seven (BEGIN, source, quota, job, event, audit, COMMIT), each with its
# share of driver and SQLAlchemy time.
_AUDIT_COLUMNS = tuple(column.name for column in _audit.c)
_PLAIN_SQL = f"""
WITH admitted AS (
    SELECT 1 FROM sources
    WHERE tenant_id = :tenant_id AND source_id = :source_id {{project}}
      AND enabled AND NOT paused
      AND NOT EXISTS (SELECT 1 FROM quotas WHERE tenant_id = :tenant_id AND job_type = :job_type)
),
job AS (
    INSERT INTO jobs ({", ".join(_COLUMNS)})
    SELECT {", ".join(":j_" + name for name in _COLUMNS)} FROM admitted
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING job_id
),
event AS (
    INSERT INTO events ({", ".join(EVENT_COLUMNS)})
    SELECT {", ".join(":e_" + name for name in EVENT_COLUMNS)} FROM job
),
entry AS (
    INSERT INTO audit_entries ({", ".join(_AUDIT_COLUMNS)})
    SELECT {", ".join(":a_" + name for name in _AUDIT_COLUMNS)} FROM job
)
SELECT count(*) AS inserted FROM job
"""
_PLAIN_TYPES = (
    *(sa.bindparam("j_" + name, type_=_table.c[name].type) for name in _COLUMNS),
    *(sa.bindparam("e_" + name, type_=_events.c[name].type) for name in EVENT_COLUMNS),
    *(sa.bindparam("a_" + name, type_=_audit.c[name].type) for name in _AUDIT_COLUMNS),
    sa.bindparam("tenant_id", type_=_sources.c.tenant_id.type),
    sa.bindparam("source_id", type_=_sources.c.source_id.type),
    sa.bindparam("job_type", type_=_table.c.job_type.type),
)
_PLAIN = {
    project: sa.text(
        _PLAIN_SQL.replace("{project}", "AND project_id = :project_id" if project else "")
    ).bindparams(
        *_PLAIN_TYPES,
        *([sa.bindparam("project_id", type_=_sources.c.project_id.type)] if project else []),
    )
    for project in (False, True)
}


async def insert_plain_job(
    autocommit: AsyncEngine, job: Job, event: NewEvent, entry: AuditEntry
) -> bool:
    """`Store.insert_plain_job` (server/domain/units.py) on PostgreSQL: the statement
    above on an engine in AUTOCOMMIT; whether it inserted."""
    values: dict[str, Any] = {"j_" + name: getattr(job, name) for name in _COLUMNS}
    values.update({"e_" + name: value for name, value in event_values(event).items()})
    values.update({"a_" + name: getattr(entry, name) for name in _AUDIT_COLUMNS})
    values.update(tenant_id=job.tenant_id, source_id=job.source_id, job_type=job.job_type)
    if job.project_id is not None:
        values["project_id"] = job.project_id
    async with autocommit.connect() as conn:
        inserted = (await conn.execute(_PLAIN[job.project_id is not None], values)).scalar()
    return bool(inserted)


class SqlJobReads:
    """`JobReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, job_id: str, *, project_id: str | None) -> sa.Row[Any]:
        async with self._db.read() as conn:
            row: sa.Row[Any] | None = (
                await conn.execute(_one(tenant_id, job_id, project_id))
            ).first()
        if row is None:
            raise NotFound.of(JOB, job_id)
        return row  # a Core row has the attributes of JobRecord

    async def page(
        self, query: JobQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        statement = keyset_select(_table, JOB_LISTING, _where(query), after=after, limit=limit)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows

    async def summary(self, tenant_id: str, *, project_id: str | None) -> list[StatusCount]:
        clauses = [_table.c.tenant_id == tenant_id]
        if project_id is not None:
            clauses.append(_table.c.project_id == project_id)
        statement = (
            sa.select(
                _table.c.job_type,
                _table.c.status,
                sa.func.count().label("n"),
                sa.func.max(_table.c.updated_at).label("last_updated_at"),
            )
            .where(*clauses)
            .group_by(_table.c.job_type, _table.c.status)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            StatusCount(
                job_type=row.job_type,
                status=row.status,
                count=int(row.n),
                last_updated_at=_time(row.last_updated_at),
            )
            for row in rows
        ]


def _time(value: datetime | str) -> datetime:
    """`max()` over a timestamp comes back as text from SQLite (the aggregate has no
    column type to convert by)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


class SqlJobRepository:
    """`JobRepository` over the session of one unit of work; owned jobs it cancels are
    added to `ended`, which the store announces after the commit (job_endings.py)."""

    def __init__(self, session: AsyncSession, ended: list[JobEnding] | None = None) -> None:
        self._session = session
        self._ended = ended if ended is not None else []

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def source_states(
        self, tenant_id: str, source_ids: Sequence[str], *, project_id: str | None
    ) -> Mapping[str, SourceState]:
        if not source_ids:
            return {}
        values: dict[str, Any] = {"tenant_id": tenant_id, "source_ids": list(source_ids)}
        statement = _SOURCE_STATES
        if project_id is not None:
            statement = _PROJECT_SOURCE_STATES
            values["project_id"] = project_id
        rows = (await (await self._conn()).execute(statement, values)).all()
        return {row.source_id: SourceState(enabled=row.enabled, paused=row.paused) for row in rows}

    async def by_keys(self, tenant_id: str, keys: Sequence[str]) -> Sequence[Job]:
        if not keys:
            return []
        statement = sa.select(_table).where(
            _table.c.tenant_id == tenant_id, _table.c.idempotency_key.in_(keys)
        )
        rows = (await (await self._conn()).execute(statement)).all()
        return [Job(**row._asdict()) for row in rows]

    async def quota_states(
        self, tenant_id: str, job_types: Sequence[str], *, now: datetime
    ) -> dict[str, QuotaState]:
        conn = await self._conn()
        rows = (
            await conn.execute(QUOTA_STATES, quota_state_params(tenant_id, job_types, now))
        ).all()
        return {row.job_type: quota_state(row) for row in rows}

    async def insert(self, jobs: Sequence[Job]) -> set[str]:
        if not jobs:
            return set()
        return await insert_jobs(await self._conn(), jobs)

    async def get(
        self, tenant_id: str, job_id: str, *, project_id: str | None, lock: bool = False
    ) -> Job:
        statement = _one(tenant_id, job_id, project_id)
        if lock:
            statement = statement.with_for_update()
        row = (await (await self._conn()).execute(statement)).first()
        if row is None:
            raise NotFound.of(JOB, job_id)
        return Job(**row._asdict())

    async def owning_instances(self, tenant_id: str, owners: Sequence[str]) -> dict[str, str]:
        # "{engine}/{id}": a token's id is its saga step's id; both are primary keys.
        by_id = {owner.partition("/")[2]: owner for owner in owners if "/" in owner}
        if not by_id:
            return {}
        conn = await self._conn()
        found: dict[str, str] = {}
        for table, key in ((_saga_steps, _saga_steps.c.step_id), (_tokens, _tokens.c.token_id)):
            missing = sorted(set(by_id) - set(found))
            if not missing:
                break
            statement = sa.select(key.label("id"), table.c.instance_id).where(
                table.c.tenant_id == tenant_id, key.in_(missing)
            )
            for row in (await conn.execute(statement)).all():
                found[row.id] = row.instance_id
        return {by_id[item]: instance for item, instance in found.items()}

    async def dead_letter_entry_of(self, tenant_id: str, job_id: str) -> str | None:
        conn = await self._conn()
        current = job_id
        for _ in range(_REPLAY_CHAIN_MAX):
            entry = sa.select(_dead_letters.c.entry_id).where(
                _dead_letters.c.job_id == current, _dead_letters.c.tenant_id == tenant_id
            )
            found: str | None = (await conn.execute(entry)).scalar_one_or_none()
            if found is not None:
                return found
            # the entry moved on to the job replaying this one: its job.replayed event
            replayed = (
                sa.select(_events.c.data)
                .where(
                    _events.c.tenant_id == tenant_id,
                    _events.c.subject == JOB.name(current),
                    _events.c.type == REPLAYED_EVENT,
                )
                .order_by(_events.c.event_id.desc())
                .limit(1)
            )
            data = (await conn.execute(replayed)).scalar_one_or_none()
            replay = json.loads(data).get("replayJobId") if data else None
            if not isinstance(replay, str):
                return None
            current = replay
        return None

    async def runs_of_steps(self, tenant_id: str, jobs: Sequence[Job]) -> dict[str, StepRun]:
        named = {job.job_id: job.pack_run_id for job in jobs if job.pack_run_id is not None}
        if not named:
            return {}
        # the step rows by their key's prefix (pack_run_id), the run by its key
        statement = (
            sa.select(
                _pack_steps.c.job_id,
                _pack_runs.c.pack_run_id,
                _pack_runs.c.status,
                _pack_runs.c.retried_by,
            )
            .join(_pack_runs, _pack_runs.c.pack_run_id == _pack_steps.c.pack_run_id)
            .where(
                _pack_steps.c.pack_run_id.in_(sorted(set(named.values()))),
                _pack_steps.c.job_id.in_(sorted(named)),
                _pack_runs.c.tenant_id == tenant_id,
            )
        )
        conn = await self._conn()
        rows = [
            row
            for row in (await conn.execute(statement)).all()
            if named.get(row.job_id) == row.pack_run_id
        ]
        newest = await _newest_retries(
            conn, tenant_id, {row.retried_by for row in rows if row.retried_by}
        )
        return {
            row.job_id: StepRun(
                row.pack_run_id,
                row.status,
                row.retried_by,
                *(newest[row.retried_by] if row.retried_by else (row.pack_run_id, row.status)),
            )
            for row in rows
        }

    async def cancel(self, job: Job, *, now: datetime) -> tuple[Job, list[tuple[str, str]]]:
        conn = await self._conn()
        values: dict[str, Any] = {
            "status": JobStatus.CANCELED.value,
            "next_eligible_at": None,
            "lease_expires_at": None,
            "updated_at": now,
            "finished_at": now,
            "quota_id": None,
        }
        result = await conn.execute(
            sa.update(_table)
            .where(_table.c.job_id == job.job_id, _table.c.status == job.status)
            .values(**values)
        )
        if result.rowcount != 1:  # moved since it was read (SQLite takes no row lock)
            raise Aborted(
                f"job {job.job_id!r} changed while it was being canceled; try again",
                reason="JOB_CHANGED",
                metadata={"jobId": job.job_id},
            )
        # After the guarded UPDATE, so a job that moved releases nothing.
        woken = await release_slots(conn, [job.quota_id], now=now)
        if owned(job.pack_run_id, job.owner):
            ended = JobEnding(job.tenant_id, job.job_id, _CANCELED, job.pack_run_id, job.owner)
            self._ended.append(ended)
        return Job(**(job_values(job) | values)), woken
