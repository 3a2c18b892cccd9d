"""Pack runs in SQL: the repositories `server/domain/pack_runs.py` describes, as
SQLAlchemy Core statements. No commits here; a unit of work commits.

- Lock: `UPDATE pack_runs SET version = version + 1 .. RETURNING *` is the first
  statement of every unit of work that changes a run: it holds the run's row lock
  (PostgreSQL) or the write lock (SQLite) until the commit, so what it reads next
  stays true.
- A run's jobs are read with their jobs' status and attempts by one LEFT JOIN on
  the jobs' primary key (a pruned job reads as NULL).
- Runs with ended jobs: the running pack jobs (`ix_pack_run_jobs_running`, partial)
  joined to `jobs` by primary key, finished or gone.
- Reads are one statement each (one snapshot): a run LEFT JOIN its jobs LEFT JOIN
  their jobs; a listing page (keyset over (created_at DESC, pack_run_id DESC), served
  backwards by `ix_pack_runs_tenant_created_id`) LEFT JOIN its runs' counts (one
  GROUP BY over the page's runs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.errors import NotFound
from server.domain.pack_runs import (
    PACK_RUN,
    PACK_RUN_LISTING,
    STEP_FINISHED,
    STEP_STATUSES,
    PackRun,
    PackRunQuery,
    PackRunView,
    PackStep,
    count_steps,
)
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.repositories.deadletter import take_over_entries
from server.storage.tables import (
    PACK_RUN_JOB_RUNNING_PREDICATE,
    JobRow,
    PackRunJobRow,
    PackRunRow,
    table_of,
)

_runs = table_of(PackRunRow)
_steps = table_of(PackRunJobRow)
_jobs = table_of(JobRow)
_FINISHED_JOBS = ("succeeded", "dead_lettered", "canceled")
_RUN_FIELDS = tuple(column.name for column in _runs.columns)


def _run(row: Any) -> PackRun:
    return PackRun(**{name: getattr(row, name) for name in _RUN_FIELDS})


def _step(row: Any) -> PackStep:
    return PackStep(
        pack_run_id=row.pack_run_id,
        position=row.position,
        tenant_id=row.tenant_id,
        name=row.name,
        job_type=row.job_type,
        source_id=row.source_id,
        priority=row.priority,
        payload=row.payload,
        max_attempts=row.max_attempts,
        backoff_initial_s=row.backoff_initial_s,
        backoff_max_s=row.backoff_max_s,
        backoff_multiplier=row.backoff_multiplier,
        backoff_jitter=row.backoff_jitter,
        depends_on=tuple(json.loads(row.depends_on)),
        status=row.status,
        job_id=row.job_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        job_status=row.job_status,
        attempts=row.job_attempts or 0,
    )


def _steps_of(pack_run_id: str) -> sa.Select[Any]:
    return (
        sa.select(
            _steps, _jobs.c.status.label("job_status"), _jobs.c.attempts.label("job_attempts")
        )
        .select_from(_steps.outerjoin(_jobs, _jobs.c.job_id == _steps.c.job_id))
        .where(_steps.c.pack_run_id == pack_run_id)
        .order_by(_steps.c.position)
    )


def _one(tenant_id: str, pack_run_id: str, project_id: str | None) -> list[sa.ColumnElement[bool]]:
    clauses = [_runs.c.tenant_id == tenant_id, _runs.c.pack_run_id == pack_run_id]
    if project_id is not None:
        clauses.append(_runs.c.project_id == project_id)
    return clauses


def _step_values(step: PackStep) -> dict[str, Any]:
    return {
        "pack_run_id": step.pack_run_id,
        "position": step.position,
        "tenant_id": step.tenant_id,
        "name": step.name,
        "job_type": step.job_type,
        "source_id": step.source_id,
        "priority": step.priority,
        "payload": step.payload,
        "max_attempts": step.max_attempts,
        "backoff_initial_s": step.backoff_initial_s,
        "backoff_max_s": step.backoff_max_s,
        "backoff_multiplier": step.backoff_multiplier,
        "backoff_jitter": step.backoff_jitter,
        "depends_on": json.dumps(list(step.depends_on), separators=(",", ":")),
        "status": step.status,
        "job_id": step.job_id,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }


class SqlPackRunRepository:
    """`PackRunRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def insert(self, run: PackRun, steps: Sequence[PackStep]) -> None:
        conn = await self._conn()
        await conn.execute(
            sa.insert(_runs).values(**{name: getattr(run, name) for name in _RUN_FIELDS})
        )
        if steps:
            await conn.execute(sa.insert(_steps), [_step_values(step) for step in steps])

    async def lock(self, tenant_id: str, pack_run_id: str, *, project_id: str | None) -> PackRun:
        row = (
            await (await self._conn()).execute(
                sa.update(_runs)
                .where(*_one(tenant_id, pack_run_id, project_id))
                .values(version=_runs.c.version + 1)
                .returning(*_runs.c)
            )
        ).first()
        if row is None:
            raise NotFound.of(PACK_RUN, pack_run_id)
        return _run(row)

    async def steps(self, pack_run_id: str) -> list[PackStep]:
        rows = (await (await self._conn()).execute(_steps_of(pack_run_id))).all()
        return [_step(row) for row in rows]

    async def move_step(
        self, step: PackStep, *, status: str, now: datetime, job_id: str | None = None
    ) -> bool:
        values: dict[str, Any] = {"status": status}
        if job_id is not None:
            values["job_id"] = job_id
            values["started_at"] = now
        if status in STEP_FINISHED:
            values["finished_at"] = now
        result = await (await self._conn()).execute(
            sa.update(_steps)
            .where(
                _steps.c.pack_run_id == step.pack_run_id,
                _steps.c.position == step.position,
                _steps.c.status == step.status,
            )
            .values(**values)
        )
        return bool(result.rowcount == 1)

    async def replay_dead_letters(
        self, tenant_id: str, replays: Mapping[str, str], *, now: datetime
    ) -> int:
        return await take_over_entries(await self._conn(), tenant_id, replays, now=now)

    async def update_run(
        self,
        pack_run_id: str,
        *,
        now: datetime,
        status: str | None = None,
        retried_by: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"updated_at": now}
        if status is not None:
            values["status"] = status
            if status != "running":
                values["finished_at"] = now
        if retried_by is not None:
            values["retried_by"] = retried_by
        await (await self._conn()).execute(
            sa.update(_runs).where(_runs.c.pack_run_id == pack_run_id).values(**values)
        )


class SqlPackRunReads:
    """`PackRunReads`: each call one statement on a connection from the pool, so what it
    answers is one snapshot."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, pack_run_id: str, *, project_id: str | None) -> PackRunView:
        run_columns = [column.label(f"run_{column.name}") for column in _runs.columns]
        statement = (
            sa.select(
                *run_columns,
                *_steps.columns,
                _jobs.c.status.label("job_status"),
                _jobs.c.attempts.label("job_attempts"),
            )
            .select_from(
                _runs.outerjoin(_steps, _steps.c.pack_run_id == _runs.c.pack_run_id).outerjoin(
                    _jobs, _jobs.c.job_id == _steps.c.job_id
                )
            )
            .where(*_one(tenant_id, pack_run_id, project_id))
            .order_by(_steps.c.position)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        if not rows:
            raise NotFound.of(PACK_RUN, pack_run_id)
        run = PackRun(**{name: getattr(rows[0], f"run_{name}") for name in _RUN_FIELDS})
        steps = [_step(row) for row in rows if row.position is not None]
        return PackRunView(run=run, steps=steps, counts=count_steps(steps))

    async def page(
        self, query: PackRunQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[PackRunView]:
        where = [_runs.c.tenant_id == query.tenant_id]
        for column, value in (
            (_runs.c.project_id, query.project_id),
            (_runs.c.status, query.status),
            (_runs.c.pack_name, query.pack_name),
        ):
            if value is not None:
                where.append(column == value)
        page = keyset_select(_runs, PACK_RUN_LISTING, where, after=after, limit=limit).subquery(
            "page"
        )
        s = _steps.c
        counted = (
            sa.select(
                s.pack_run_id.label("counted_id"),
                *(
                    sa.func.sum(sa.case((s.status == status, 1), else_=0)).label(f"n_{status}")
                    for status in STEP_STATUSES
                ),
                sa.func.count().label("n_total"),
            )
            .where(s.pack_run_id.in_(sa.select(page.c.pack_run_id)))
            .group_by(s.pack_run_id)
            .subquery("counted")
        )
        statement = (
            sa.select(page, *(c for c in counted.columns if c.name != "counted_id"))
            .select_from(page.outerjoin(counted, counted.c.counted_id == page.c.pack_run_id))
            .order_by(page.c.created_at.desc(), page.c.pack_run_id.desc())
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            PackRunView(
                run=_run(row),
                steps=None,
                counts={
                    name: int(getattr(row, f"n_{name}") or 0) for name in (*STEP_STATUSES, "total")
                },
            )
            for row in rows
        ]

    async def with_ended_jobs(self, limit: int) -> Sequence[tuple[str, str]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(ended_jobs_query(limit))).all()
        return [(row.tenant_id, row.pack_run_id) for row in rows]


def ended_jobs_query(limit: int) -> sa.Select[Any]:
    """(tenant_id, pack_run_id) of up to `limit` runs with a running job whose job has
    finished or is gone: the running jobs (`ix_pack_run_jobs_running`) joined to
    `jobs` by primary key."""
    ended = sa.or_(_jobs.c.job_id.is_(None), _jobs.c.status.in_(_FINISHED_JOBS))
    return (
        sa.select(_steps.c.tenant_id, _steps.c.pack_run_id)
        .select_from(_steps.outerjoin(_jobs, _jobs.c.job_id == _steps.c.job_id))
        # spelled as the partial index's WHERE, so SQLite uses it too
        .where(sa.text(f"pack_run_jobs.{PACK_RUN_JOB_RUNNING_PREDICATE}"), ended)
        .distinct()
        .limit(limit)
    )
