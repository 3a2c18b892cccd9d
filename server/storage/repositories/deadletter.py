"""Dead-letter entries in SQL (`server/domain/deadletter.py`): SQLAlchemy Core, no commits.

Writers, each in the caller's transaction:

- `record_dead_letters`: the lease writers (`repositories/leases.py`: a final
  failure, a final lease expiry) call it with the jobs they dead-lettered. A job that
  replays an entry (`replay_job_id`) turns that entry pending again; any other gets a
  new entry (one multi-row INSERT). Cluster counters change by deltas.
- `resolve_replays`: the completion writers call it with the jobs they completed;
  entries replayed by one of them become resolved (`ix_deadletter_entries_replay_job`).
- `take_over_entries`: a pack run's retry (`repositories/pack_runs.py`) marks the
  pending entries of the dead-lettered jobs it re-runs replayed by its new jobs.
- `SqlDeadLetterRepository.claim`: a replay's conditional claim. PostgreSQL: one
  statement that locks the named pending entries in entry_id order (`FOR UPDATE`,
  re-checked after a wait, so an entry a concurrent call replayed meanwhile drops
  out) and marks them replayed; SQLite (writers serialised): an UPDATE .. WHERE
  status = 'pending' .. RETURNING, then the replay job ids.

Cluster counters (`deadletter_clusters`) are upserted by deltas, one row per (tenant,
project, fingerprint), in key order so two writers never lock them in opposite
orders. Lock order everywhere: jobs, then entries, then cluster rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.deadletter import (
    DEAD_LETTER_ENTRY,
    ENTRY_LISTING,
    PENDING_SWEEP,
    ClusterCounters,
    EntryQuery,
    EntryStatus,
)
from server.domain.errors import NotFound
from server.domain.fingerprint import fingerprint
from server.domain.jobs import Job
from server.domain.units import Store
from server.storage.db import Database
from server.storage.keyset import keyset_select
from server.storage.tables import (
    DEADLETTER_PENDING_PREDICATE,
    DeadLetterClusterRow,
    DeadLetterEntryRow,
    JobRow,
    table_of,
)

if TYPE_CHECKING:  # store.py imports the lease writers, which import this module
    from server.storage.store import SqlStore, SqlUnitOfWork

_entries = table_of(DeadLetterEntryRow)
_clusters = table_of(DeadLetterClusterRow)
_jobs = table_of(JobRow)
_PENDING = EntryStatus.PENDING.value
_REPLAYED = EntryStatus.REPLAYED.value
_RESOLVED = EntryStatus.RESOLVED.value
# As the partial index's WHERE is spelled, so SQLite matches the query to the index.
_IS_PENDING: sa.ColumnElement[bool] = sa.literal_column(DEADLETTER_PENDING_PREDICATE, sa.Boolean())


def dead_lettered(
    job: Any, category: str, code: str, message: str, *, retryable: bool
) -> DeadLettered:
    """The `DeadLettered` of a jobs row (as read before the change) and its error."""
    return DeadLettered(
        tenant_id=job.tenant_id,
        project_id=job.project_id,
        job_id=job.job_id,
        job_type=job.job_type,
        source_id=job.source_id,
        replay_of=job.replay_of,
        category=category,
        code=code,
        message=message,
        retryable=retryable,
        attempts=job.attempts,
    )


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A job the caller just moved to dead_lettered, with the error that did it."""

    tenant_id: str
    project_id: str | None
    job_id: str
    job_type: str
    source_id: str
    replay_of: str | None
    category: str
    code: str
    message: str
    retryable: bool
    attempts: int


@dataclass(slots=True)
class _Delta:
    category: str
    error_code: str
    sample_message: str
    total: int = 0
    pending: int = 0
    retryable: int = 0


_Key = tuple[str, str, str]  # tenant, project key ('' for none), fingerprint


def _add(
    deltas: dict[_Key, _Delta],
    key: _Key,
    *,
    category: str,
    code: str,
    message: str,
    total: int,
    pending: int,
    retryable: int,
) -> None:
    delta = deltas.get(key)
    if delta is None:
        delta = deltas[key] = _Delta(category, code, message)
    if pending > 0:
        delta.sample_message = message  # the latest added message is the cluster's sample
    delta.total += total
    delta.pending += pending
    delta.retryable += retryable


_COUNTER_COLUMNS = (
    "tenant_id",
    "project_key",
    "fingerprint",
    "category",
    "error_code",
    "sample_message",
    "total",
    "pending",
    "retryable",
    "last_failed_at",
)
# What a conflicting row becomes: counts added, sample and time taken from the delta
# when it adds pending entries (the latest failure), kept otherwise.
_ON_CONFLICT = """
ON CONFLICT (tenant_id, project_key, fingerprint) DO UPDATE SET
    total = deadletter_clusters.total + excluded.total,
    pending = deadletter_clusters.pending + excluded.pending,
    retryable = deadletter_clusters.retryable + excluded.retryable,
    sample_message = CASE WHEN excluded.pending > 0 THEN excluded.sample_message
                          ELSE deadletter_clusters.sample_message END,
    last_failed_at = CASE WHEN excluded.pending > 0 THEN excluded.last_failed_at
                          ELSE deadletter_clusters.last_failed_at END
"""
_ARRAY_TYPES = ("text",) * 6 + ("int",) * 3 + ("timestamptz",)
# PostgreSQL: every cluster's delta in one statement, one array per column, rows in
# key order (the order they are inserted and locked in).
_PG_UPSERT = sa.text(
    f"INSERT INTO deadletter_clusters ({', '.join(_COUNTER_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(
        f"CAST(:{name} AS {kind}[])"
        for name, kind in zip(_COUNTER_COLUMNS, _ARRAY_TYPES, strict=True)
    )
    + ") ORDER BY 1, 2, 3"
    + _ON_CONFLICT
)
# SQLite (writers serialised): the same statement executed once per row.
_SQLITE_UPSERT = sa.text(
    f"INSERT INTO deadletter_clusters ({', '.join(_COUNTER_COLUMNS)}) VALUES ("
    + ", ".join(f":{name}" for name in _COUNTER_COLUMNS)
    + ")"
    + _ON_CONFLICT
).bindparams(sa.bindparam("last_failed_at", type_=_clusters.c.last_failed_at.type))


async def _apply(conn: AsyncConnection, deltas: Mapping[_Key, _Delta], now: datetime) -> None:
    """Add `deltas` to their cluster rows (created when absent), in key order: one
    statement whatever the number of clusters."""
    rows = [
        (*key, d.category, d.error_code, d.sample_message, d.total, d.pending, d.retryable, now)
        for key, d in sorted(deltas.items())
        if d.total or d.pending or d.retryable
    ]
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        columns = {name: [row[i] for row in rows] for i, name in enumerate(_COUNTER_COLUMNS)}
        await conn.execute(_PG_UPSERT, columns)
    else:
        params = [dict(zip(_COUNTER_COLUMNS, row, strict=True)) for row in rows]
        await conn.execute(_SQLITE_UPSERT, params)


async def record_dead_letters(
    conn: AsyncConnection, items: Sequence[DeadLettered], *, now: datetime
) -> None:
    """Write the entries of jobs dead-lettered in `conn`'s transaction (see the module
    docstring): chains re-opened, new entries inserted, counters moved."""
    if not items:
        return
    deltas: dict[_Key, _Delta] = {}
    reopened: dict[str, Any] = {}
    replays = sorted(item.job_id for item in items if item.replay_of is not None)
    if replays:
        statement = (
            sa.select(_entries)
            .where(_entries.c.replay_job_id.in_(replays), _entries.c.status == _REPLAYED)
            .order_by(_entries.c.entry_id)
            .with_for_update()
        )
        reopened = {row.replay_job_id: row for row in await conn.execute(statement)}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for item in items:
        print_ = fingerprint(item.category, item.code, item.message)
        values = {
            "job_id": item.job_id,
            "job_type": item.job_type,
            "source_id": item.source_id,
            "category": item.category,
            "error_code": item.code,
            "message": item.message,
            "fingerprint": print_,
            "retryable": item.retryable,
            "attempts": item.attempts,
            "status": _PENDING,
            "last_failed_at": now,
            "updated_at": now,
        }
        project_key = item.project_id or ""
        old = reopened.get(item.job_id)
        if old is not None:
            updates.append({"b_entry_id": old.entry_id, **values})
            _add(
                deltas,
                (old.tenant_id, old.project_id or "", old.fingerprint),
                category=old.category,
                code=old.error_code,
                message=old.message,
                total=-1,
                pending=0,
                retryable=0,
            )
        else:
            inserts.append(
                {
                    "entry_id": str(uuid.uuid4()),
                    "tenant_id": item.tenant_id,
                    "project_id": item.project_id,
                    "first_failed_at": now,
                    "replay_count": 0,
                    "replay_job_id": None,
                    **values,
                }
            )
        _add(
            deltas,
            (item.tenant_id, project_key, print_),
            category=item.category,
            code=item.code,
            message=item.message,
            total=1,
            pending=1,
            retryable=1 if item.retryable else 0,
        )
    if updates:
        await conn.execute(
            sa.update(_entries)
            .where(_entries.c.entry_id == sa.bindparam("b_entry_id"))
            .values({name: sa.bindparam(name) for name in updates[0] if name != "b_entry_id"}),
            updates,
        )
    if inserts:
        await conn.execute(sa.insert(_entries), inserts)
    await _apply(conn, deltas, now)


async def resolve_replays(conn: AsyncConnection, job_ids: Sequence[str], *, now: datetime) -> None:
    """Entries whose replay is one of `job_ids` (just completed in `conn`'s transaction)
    become resolved. Counters are unchanged: they count pending entries, and a
    replayed entry was taken off them when it was replayed."""
    if not job_ids:
        return
    await conn.execute(
        sa.update(_entries)
        .where(_entries.c.replay_job_id.in_(sorted(job_ids)), _entries.c.status == _REPLAYED)
        .values(status=_RESOLVED, updated_at=now)
    )


async def take_over_entries(
    conn: AsyncConnection, tenant_id: str, replays: Mapping[str, str], *, now: datetime
) -> int:
    """Entries whose chain the jobs in `replays` (job id -> the job that re-runs it,
    inserted in `conn`'s transaction: a pack run retry's) end become replayed by the
    new job (replayCount + 1): a pending entry of the old job (off the pending
    counters), and a replayed entry whose replay was the old job (a retry's job that
    was canceled rather than dead-lettered: the chain goes on from it). Resolved
    entries are left alone. Locked in entry_id order (FOR UPDATE, the status
    re-checked after a wait). The number taken over."""
    if not replays:
        return 0
    c = _entries.c
    olds = sorted(replays)
    rows = (
        await conn.execute(
            sa.select(c.entry_id, c.job_id, c.status, c.replay_job_id, c.tenant_id)
            .add_columns(c.project_id, c.fingerprint, c.retryable, c.category)
            .add_columns(c.error_code, c.message)
            .where(
                c.tenant_id == tenant_id,
                sa.or_(
                    sa.and_(c.job_id.in_(olds), c.status == _PENDING),
                    sa.and_(c.replay_job_id.in_(olds), c.status == _REPLAYED),
                ),
            )
            .order_by(c.entry_id)
            .with_for_update()
        )
    ).all()
    if not rows:
        return 0

    def new_job(row: Any) -> str:
        return replays[row.job_id if row.status == _PENDING else row.replay_job_id]

    await conn.execute(
        sa.update(_entries)
        .where(c.entry_id == sa.bindparam("b_entry_id"))
        .values(
            status=_REPLAYED,
            replay_job_id=sa.bindparam("b_job_id"),
            replay_count=c.replay_count + 1,
            updated_at=now,
        ),
        [{"b_entry_id": row.entry_id, "b_job_id": new_job(row)} for row in rows],
    )
    await _apply(conn, _off_pending([row for row in rows if row.status == _PENDING]), now)
    return len(rows)


def _off_pending(rows: Sequence[Any]) -> dict[_Key, _Delta]:
    """The counter deltas of entries that just left `pending` (replayed): a claim's or a
    take-over's rows (tenant_id, project_id, fingerprint, retryable, category,
    error_code, message). Their total is unchanged."""
    deltas: dict[_Key, _Delta] = {}
    for row in rows:
        _add(
            deltas,
            (row.tenant_id, row.project_id or "", row.fingerprint),
            category=row.category,
            code=row.error_code,
            message=row.message,
            total=0,
            pending=-1,
            retryable=-1 if row.retryable else 0,
        )
    return deltas


# PostgreSQL: lock the named pending entries in entry_id order (re-checked after a
# wait: one a concurrent call replayed meanwhile drops out), then mark exactly the
# locked ones replayed with a new replay job id, in one statement. Entries are found
# by `= ANY(array)` (a primary-key scan) and nothing joins an unnest: a join with the
# clones' ids as an unnest made PostgreSQL rescan it per row once the prepared
# statement's generic plan took over (1,000 x 1,000 rows, 100-370 ms a call).
_PG_CLAIM = sa.text(
    """
WITH locked AS MATERIALIZED (
    SELECT entry_id FROM deadletter_entries
    WHERE entry_id = ANY(CAST(:entry_ids AS text[]))
      AND tenant_id = :tenant_id AND status = 'pending'
    ORDER BY entry_id
    FOR UPDATE
)
UPDATE deadletter_entries d SET
    status = 'replayed', replay_job_id = gen_random_uuid()::text,
    replay_count = d.replay_count + 1, updated_at = :now
FROM locked
WHERE d.entry_id = locked.entry_id
RETURNING d.entry_id, d.replay_job_id, d.tenant_id, d.project_id, d.fingerprint, d.retryable,
          d.category, d.error_code, d.message
"""
)
# `= ANY(array)`: an index scan of the primary key for any number of ids (the planner
# cannot read a join with an unnest's rows that way when it misjudges their count).
_PG_JOBS = sa.select(_jobs).where(
    _jobs.c.tenant_id == sa.bindparam("tenant_id"),
    _jobs.c.job_id == sa.any_(sa.bindparam("job_ids", type_=postgresql.ARRAY(sa.Text()))),
)


def _where(query: EntryQuery) -> list[sa.ColumnElement[bool]]:
    c = _entries.c
    clauses: list[sa.ColumnElement[bool]] = [c.tenant_id == query.tenant_id]
    for column, value in (
        (c.project_id, query.project_id),
        (c.category, query.category),
        (c.error_code, query.error_code),
        (c.job_type, query.job_type),
        (c.source_id, query.source_id),
        (c.fingerprint, query.fingerprint),
    ):
        if value is not None:
            clauses.append(column == value)
    if query.status == _PENDING:
        clauses.append(_IS_PENDING)
    elif query.status is not None:
        clauses.append(c.status == query.status)
    if query.failed_after is not None:
        clauses.append(c.last_failed_at >= query.failed_after)
    if query.failed_before is not None:
        clauses.append(c.last_failed_at < query.failed_before)
    return clauses


class SqlDeadLetterReads:
    """`DeadLetterReads`: each call one connection from the pool, returned at once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, entry_id: str, *, project_id: str | None) -> sa.Row[Any]:
        clauses = [_entries.c.tenant_id == tenant_id, _entries.c.entry_id == entry_id]
        if project_id is not None:
            clauses.append(_entries.c.project_id == project_id)
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(_entries).where(*clauses))).first()
        if row is None:
            raise NotFound.of(DEAD_LETTER_ENTRY, entry_id)
        return row

    async def page(
        self, query: EntryQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        statement = keyset_select(_entries, ENTRY_LISTING, _where(query), after=after, limit=limit)
        async with self._db.read() as conn:
            rows: Sequence[sa.Row[Any]] = (await conn.execute(statement)).all()
        return rows

    async def clusters(self, tenant_id: str, *, project_id: str | None) -> list[ClusterCounters]:
        c = _clusters.c
        clauses = [c.tenant_id == tenant_id, c.total > 0]
        if project_id is not None:
            clauses.append(c.project_key == project_id)
        statement = sa.select(
            c.fingerprint,
            c.category,
            c.error_code,
            c.sample_message,
            c.total,
            c.pending,
            c.retryable,
            c.last_failed_at,
        ).where(*clauses)
        async with self._db.read() as conn:
            rows = (await conn.execute(statement)).all()
        return [ClusterCounters(*row) for row in rows]

    async def oldest_pending(self, tenant_id: str, *, project_id: str | None) -> datetime | None:
        c = _entries.c
        clauses: list[sa.ColumnElement[bool]] = [c.tenant_id == tenant_id, _IS_PENDING]
        if project_id is not None:
            clauses.append(c.project_id == project_id)
        statement = (
            sa.select(c.last_failed_at)
            .where(*clauses)
            .order_by(c.tenant_id, c.last_failed_at, c.entry_id)
            .limit(1)
        )
        async with self._db.read() as conn:
            value: datetime | None = (await conn.execute(statement)).scalar()
        return value


class SqlDeadLetterRepository:
    """`DeadLetterRepository` over the session of one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _conn(self) -> AsyncConnection:
        return await self._session.connection()

    async def by_ids(
        self, tenant_id: str, entry_ids: Sequence[str], *, project_id: str | None
    ) -> Sequence[sa.Row[Any]]:
        clauses = [_entries.c.tenant_id == tenant_id, _entries.c.entry_id.in_(entry_ids)]
        if project_id is not None:
            clauses.append(_entries.c.project_id == project_id)
        statement = sa.select(_entries).where(*clauses).order_by(_entries.c.entry_id)
        rows: Sequence[sa.Row[Any]] = (await (await self._conn()).execute(statement)).all()
        return rows

    async def pending(
        self, query: EntryQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[sa.Row[Any]]:
        pending = EntryQuery(**{**_fields(query), "status": _PENDING})
        statement = keyset_select(
            _entries, PENDING_SWEEP, _where(pending), after=after, limit=limit
        )
        rows: Sequence[sa.Row[Any]] = (await (await self._conn()).execute(statement)).all()
        return rows

    async def jobs(self, tenant_id: str, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            return {}
        conn = await self._conn()
        if conn.dialect.name == "postgresql":
            params = {"tenant_id": tenant_id, "job_ids": list(job_ids)}
            rows = (await conn.execute(_PG_JOBS, params)).all()
        else:
            statement = sa.select(_jobs).where(
                _jobs.c.tenant_id == tenant_id, _jobs.c.job_id.in_(job_ids)
            )
            rows = (await conn.execute(statement)).all()
        return {row.job_id: Job(**row._asdict()) for row in rows}

    async def claim(
        self, tenant_id: str, entry_ids: Sequence[str], *, now: datetime
    ) -> dict[str, str]:
        if not entry_ids:
            return {}
        conn = await self._conn()
        if conn.dialect.name == "postgresql":
            params = {"entry_ids": list(entry_ids), "tenant_id": tenant_id, "now": now}
            rows = (await conn.execute(_PG_CLAIM, params)).all()
        else:
            rows = await self._claim_sqlite(conn, tenant_id, entry_ids, now)
        await _apply(conn, _off_pending(rows), now)
        return {row.entry_id: row.replay_job_id for row in rows}

    @staticmethod
    async def _claim_sqlite(
        conn: AsyncConnection, tenant_id: str, entry_ids: Sequence[str], now: datetime
    ) -> list[Any]:
        """SQLite serialises writers: the guarded UPDATE claims, then each claimed entry
        gets its replay job id (a uuid4, as PostgreSQL's gen_random_uuid)."""
        c = _entries.c
        rows = (
            await conn.execute(
                sa.update(_entries)
                .where(
                    c.tenant_id == tenant_id,
                    c.entry_id.in_(entry_ids),
                    c.status == _PENDING,
                )
                .values(status=_REPLAYED, replay_count=c.replay_count + 1, updated_at=now)
                .returning(
                    c.entry_id,
                    c.tenant_id,
                    c.project_id,
                    c.fingerprint,
                    c.retryable,
                    c.category,
                    c.error_code,
                    c.message,
                )
            )
        ).all()
        claimed = [_Claimed(row, str(uuid.uuid4())) for row in rows]
        if claimed:
            await conn.execute(
                sa.update(_entries)
                .where(c.entry_id == sa.bindparam("b_entry_id"))
                .values(replay_job_id=sa.bindparam("b_job_id")),
                [{"b_entry_id": k.entry_id, "b_job_id": k.replay_job_id} for k in claimed],
            )
        return claimed


class _Claimed:
    """A SQLite RETURNING row with the replay job id drawn for it."""

    __slots__ = ("_row", "replay_job_id")

    def __init__(self, row: Any, replay_job_id: str) -> None:
        self._row = row
        self.replay_job_id = replay_job_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def _fields(query: EntryQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in EntryQuery.__dataclass_fields__}


class _Unit:
    """A `DeadLetterUnit`: the store's unit of work and the dead-letter repository on
    its session."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self.uow = uow
        self.deadletter = SqlDeadLetterRepository(uow.session)


class SqlDeadLetterStore:
    """`DeadLetterStore` over the process's `SqlStore`: its reads, its units of work
    (the same transaction as their jobs, events and audit repositories) and its
    wake-ups."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.reads = SqlDeadLetterReads(store.db)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Unit]:
        async with self._store.transaction() as uow:
            yield _Unit(uow)

    def notify_work(self, tenant_id: str, job_type: str) -> None:
        self._store.notify_work(tenant_id, job_type)


def dead_letter_store(store: Store) -> SqlDeadLetterStore:
    """The dead-letter store of the process's store (an `SqlStore`)."""
    from server.storage.store import SqlStore  # here: an import cycle (see the top)

    if not isinstance(store, SqlStore):
        raise TypeError(f"the dead-letter store needs an SqlStore, got {type(store).__name__}")
    return SqlDeadLetterStore(store)
