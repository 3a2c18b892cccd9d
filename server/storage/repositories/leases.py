"""Leasing in SQL (`server/domain/leasing.py`): lease, heartbeat, complete, fail and
expire, each one short transaction that writes its events and the quota accounting
it changes. The one place that takes quota slots (`lease`) and releases them
(`release_slots`; `release_slot` for cancel).

PostgreSQL. The lease is ONE statement: a materialized CTE picks the candidates
(`FOR UPDATE SKIP LOCKED`, in the order of `ix_jobs_ready`: priority DESC,
next_eligible_at, job_id; one job type is an equality so the index yields that order
and the scan stops at LIMIT), then `UPDATE .. FROM .. RETURNING`; data-modifying CTEs
in the same statement write the events and, under quotas, take the slots, tokens and
the minute's count. Job types without a quota lease in autocommit (one round trip,
`_PG_LEASE_FREE`); with quotas the statement runs in a transaction right after the
quota rows are locked (`SELECT .. FOR UPDATE`, quota_id order), since the caps are
planned in Python (`plan_quota`) from what the lock read: BEGIN, lock, lease,
COMMIT. Measured on the 2-core box under other load, 8 tasks leasing and
completing in one process: ~570 jobs/s one job per call and ~7,000 batched (100)
without quotas, ~100-150 and ~4,000 under one quota (the quota row serialises its
leases and releases). Completion is one autocommit statement too (fencing where it
locks the jobs by key, result, slot release, events); heartbeats, failures and expiries
read the rows `FOR UPDATE` (job_id order) and update them with the fencing token in
the WHERE clause, so a stale token changes nothing.

SQLite serialises writers: each transaction starts with `BEGIN IMMEDIATE` (the write
lock up front, so what it reads stays true until it commits) behind an in-process
lock (one process serves a SQLite file), and leases with a SELECT and an UPDATE ..
RETURNING per quota.

Every writer locks quota rows in quota_id order, and job rows in job_id order or
with SKIP LOCKED, so they never deadlock. After each commit the job types that
became leasable now are announced with `Wakeups.notify`, and owned jobs that ended
(succeeded, dead-lettered) with `JobEndings.publish` (`domain/job_endings.py`: the
ownership columns come back from the statements already run, no extra round trip).

Trace ids. The events of the transitions here (job.leased, job.throttled,
job.succeeded, job.failed, job.dead_lettered, job.lease_expired) carry the job's own
trace id (`jobs.trace_id`: the call or process run that enqueued it), so a job's
history is one trace; the worker's call that caused one is the span's link
(server/domain/tracing.py). A job stored before migration 0014 falls back to the
causing call's trace id. The column comes back with the rows already read: no
extra statement.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server.domain import tracing
from server.domain.events import NewEvent
from server.domain.job_endings import JobEnding, JobEndings, owned
from server.domain.job_states import EVENT_TYPES, JobAction, JobStatus
from server.domain.leasing import (
    LEASE_EXPIRED_CATEGORY,
    LEASE_EXPIRED_CODE,
    Completion,
    Failure,
    FencingToken,
    Leased,
    LeaseRequest,
    Outcome,
    QuotaPlan,
    QuotaState,
    backoff_delay,
    canceled,
    plan_quota,
    stale,
)
from server.storage.db import Database
from server.storage.records import records
from server.storage.repositories.deadletter import (
    DeadLettered,
    dead_lettered,
    record_dead_letters,
    resolve_replays,
)
from server.storage.repositories.events import insert_events
from server.storage.tables import (
    JOBS_READY_PREDICATE,
    READY_STATUSES,
    JobRow,
    QuotaMinuteRow,
    QuotaRow,
    table_of,
)
from server.storage.wakeups import Key, Wakeups, Watch

_jobs = table_of(JobRow)
_quotas = table_of(QuotaRow)
_minutes = table_of(QuotaMinuteRow)

_LEASED = JobStatus.LEASED.value
_SUCCEEDED = JobStatus.SUCCEEDED.value
_DEAD_LETTERED = JobStatus.DEAD_LETTERED.value
_QUOTED_MAX = 10_000

# The one-statement lease under quotas (PostgreSQL), run after the quota rows are
# locked: caps come as parallel arrays, one entry per unpaused quota of the asked job
# types (a job type without one is uncapped; `cap_tokens` is the bucket refilled up
# to now, NULL when the bucket is off). Candidates within their cap are leased, the
# others throttled until their quota's `until` (plus a microsecond per place, so they
# keep their order); the same statement takes the slots and tokens, counts the
# minute's leases and writes the job.leased / job.throttled events.
_PG_LEASE_SQL = """
WITH caps AS (
    SELECT * FROM unnest(
        CAST(:cap_types AS text[]), CAST(:cap_limits AS int[]),
        CAST(:cap_quotas AS text[]), CAST(:cap_until AS timestamptz[]),
        CAST(:cap_tokens AS float8[])
    ) AS c(job_type, cap, quota_id, until, tokens)
),
candidates AS MATERIALIZED (
    SELECT job_id, job_type, priority, next_eligible_at, status
    FROM jobs
    WHERE {ready}
      AND tenant_id = :tenant_id
      AND {type_match}
      AND next_eligible_at <= :now
    ORDER BY priority DESC, next_eligible_at, job_id
    LIMIT :max_jobs
    FOR UPDATE SKIP LOCKED
),
ranked AS (
    SELECT c.job_id, c.status AS prior_status, q.quota_id AS slot_quota_id, q.until,
           (q.cap IS NULL OR row_number() OVER (
               PARTITION BY c.job_type ORDER BY c.priority DESC, c.next_eligible_at, c.job_id
           ) <= q.cap) AS take,
           row_number() OVER (
               ORDER BY c.priority DESC, c.next_eligible_at, c.job_id
           ) AS position
    FROM candidates c LEFT JOIN caps q ON q.job_type = c.job_type
),
changed AS (
    UPDATE jobs SET
        status = CASE WHEN r.take THEN 'leased' ELSE 'throttled' END,
        attempts = jobs.attempts + CASE WHEN r.take THEN 1 ELSE 0 END,
        lease_id = CASE WHEN r.take THEN replace(gen_random_uuid()::text, '-', '')
                        ELSE jobs.lease_id END,
        lease_owner = CASE WHEN r.take THEN CAST(:worker_id AS text) ELSE jobs.lease_owner END,
        lease_expires_at = CASE WHEN r.take THEN CAST(:expires_at AS timestamptz) END,
        next_eligible_at = CASE WHEN r.take THEN NULL
                                ELSE r.until + r.position * interval '1 microsecond' END,
        quota_id = CASE WHEN r.take THEN r.slot_quota_id ELSE jobs.quota_id END,
        updated_at = :now
    FROM ranked r
    WHERE jobs.job_id = r.job_id
    RETURNING jobs.*, r.prior_status, r.take, r.position
),
taken AS (
    SELECT quota_id, count(*) AS n FROM changed
    WHERE take AND quota_id IS NOT NULL GROUP BY quota_id
),
slots AS (
    UPDATE quotas SET
        active = quotas.active + t.n,
        tokens = CASE WHEN q.tokens IS NULL THEN quotas.tokens
                      ELSE GREATEST(0, q.tokens - t.n) END,
        tokens_at = CASE WHEN q.tokens IS NULL THEN quotas.tokens_at ELSE :now END
    FROM taken t JOIN caps q ON q.quota_id = t.quota_id
    WHERE quotas.quota_id = t.quota_id
),
minutes AS (
    INSERT INTO quota_minutes (quota_id, minute, count)
    SELECT quota_id, :minute, n FROM taken
    ON CONFLICT (quota_id, minute) DO UPDATE SET count = quota_minutes.count + EXCLUDED.count
),
events AS (
    INSERT INTO events (tenant_id, type, subject, data, trace_id, time)
    SELECT :tenant_id,
           CASE WHEN take THEN 'job.leased' ELSE 'job.throttled' END,
           'jobs/' || job_id,
           CASE WHEN take THEN
               '{"attempt":' || attempts || ',"from":' || to_json(prior_status)::text
               || ',"leaseId":' || to_json(lease_id)::text || ',"to":"leased","workerId":'
               || to_json(CAST(:worker_id AS text))::text || '}'
           ELSE
               '{"from":' || to_json(prior_status)::text || ',"nextEligibleAt":"'
               || to_char(next_eligible_at AT TIME ZONE 'UTC',
                          CASE WHEN date_part('microseconds', next_eligible_at)::bigint
                                    % 1000000 = 0
                               THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
                               ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
               || '","to":"throttled"}'
           END,
           coalesce(trace_id, CAST(:trace_id AS text)), :now
    FROM changed
    ORDER BY position
)
SELECT * FROM changed ORDER BY position
""".replace("{ready}", JOBS_READY_PREDICATE)


# The lease of job types without a quota (PostgreSQL), the common case: one statement,
# run in autocommit, that also writes the job.leased events and answers which of the
# asked job types do have a quota (`quota_types`, leased next by the transaction that
# locks their quota rows) and whether eligible jobs were left behind (`more`: the
# statement's snapshot held more than max_jobs, locked ones included; a long poll then
# wakes the next waiter). With no candidate, one row of NULL job columns carries them.
_PG_LEASE_FREE_SQL = f"""
WITH quota_types AS (
    SELECT job_type FROM quotas
    WHERE tenant_id = :tenant_id AND job_type = ANY(CAST(:job_types AS text[]))
),
candidates AS MATERIALIZED (
    SELECT job_id, status
    FROM jobs
    WHERE {JOBS_READY_PREDICATE}
      AND tenant_id = :tenant_id
      AND {{type_match}}
      AND job_type NOT IN (SELECT job_type FROM quota_types)
      AND next_eligible_at <= :now
    ORDER BY priority DESC, next_eligible_at, job_id
    LIMIT :max_jobs
    FOR UPDATE SKIP LOCKED
),
changed AS (
    UPDATE jobs SET
        status = 'leased',
        attempts = jobs.attempts + 1,
        lease_id = replace(gen_random_uuid()::text, '-', ''),
        lease_owner = CAST(:worker_id AS text),
        lease_expires_at = CAST(:expires_at AS timestamptz),
        next_eligible_at = NULL,
        updated_at = :now
    FROM candidates c
    WHERE jobs.job_id = c.job_id
    RETURNING jobs.*, c.status AS prior_status
),
events AS (
    INSERT INTO events (tenant_id, type, subject, data, trace_id, time)
    SELECT :tenant_id, 'job.leased', 'jobs/' || job_id,
           '{{"attempt":' || attempts || ',"from":' || to_json(prior_status)::text
           || ',"leaseId":' || to_json(lease_id)::text || ',"to":"leased","workerId":'
           || to_json(CAST(:worker_id AS text))::text || '}}',
           coalesce(trace_id, CAST(:trace_id AS text)), :now
    FROM changed
)
SELECT changed.*, TRUE AS take, q.types AS quota_types, m.more
FROM (SELECT array_agg(job_type) AS types FROM quota_types) AS q
CROSS JOIN (
    SELECT count(*) > :max_jobs AS more FROM (
        SELECT 1 FROM jobs
        WHERE {JOBS_READY_PREDICATE}
          AND tenant_id = :tenant_id
          AND {{type_match}}
          AND job_type NOT IN (SELECT job_type FROM quota_types)
          AND next_eligible_at <= :now
        LIMIT :max_jobs + 1
    ) AS eligible
) AS m
LEFT JOIN changed ON TRUE
ORDER BY changed.priority DESC, changed.job_id
"""

# Completion (PostgreSQL): one statement, run in autocommit, that checks each fencing
# token as it locks the job, stores the result, releases the slots the
# completed jobs held and writes the job.succeeded events. Answers a row per completed
# job ("done") and per quota that got slots back ("released").
# The jobs are locked by a LATERAL subquery per token (a locking subquery is never
# flattened into a join), so each is a primary-key lookup whatever the planner guesses
# of the unnest's size or of how many jobs are leased. Joined plainly, the prepared
# statement's generic plan (10 tokens guessed, few leased jobs in the statistics)
# scanned every entry of the partial index of leased jobs and of the tenant's jobs
# instead: ~5,500 buffers and 30 ms per one-job completion once 170,000 jobs had run.
# The UPDATE then names the rows by key alone: with the status and tenant in its WHERE
# clause the same guess took that scan there.
_PG_COMPLETE = sa.text(
    """
WITH v AS MATERIALIZED (
    SELECT * FROM unnest(
        CAST(:job_ids AS text[]), CAST(:lease_ids AS text[]),
        CAST(:attempts AS int[]), CAST(:results AS text[])
    ) AS v(job_id, lease_id, attempt, result)
    ORDER BY job_id COLLATE "C"
),
old AS MATERIALIZED (  -- a primary-key lookup per token, in job_id order (see above)
    SELECT o.*, v.result FROM v CROSS JOIN LATERAL (
        SELECT j.job_id, j.quota_id, j.lease_owner, j.pack_run_id, j.owner, j.trace_parent,
               j.trace_id
        FROM jobs j
        WHERE j.job_id = v.job_id AND j.tenant_id = :tenant_id AND j.status = 'leased'
          AND j.lease_id = v.lease_id AND j.attempts = v.attempt
        FOR UPDATE
    ) AS o
),
done AS (
    UPDATE jobs SET
        status = 'succeeded', result = old.result, lease_expires_at = NULL,
        next_eligible_at = NULL, quota_id = NULL, finished_at = :now, updated_at = :now
    FROM old  -- locked and fenced above; only the key here, so only its index is used
    WHERE jobs.job_id = old.job_id
    RETURNING jobs.job_id, jobs.lease_id, jobs.attempts, old.quota_id, old.lease_owner,
              old.pack_run_id, old.owner, jobs.job_type, old.trace_parent, old.trace_id
),
counts AS (
    SELECT quota_id, count(*) AS n FROM done WHERE quota_id IS NOT NULL GROUP BY quota_id
),
locked AS MATERIALIZED (  -- quota rows locked in quota_id order, as every writer does
    SELECT quota_id FROM quotas WHERE quota_id IN (SELECT quota_id FROM counts)
    ORDER BY quota_id FOR UPDATE
),
released AS (
    UPDATE quotas SET active = GREATEST(0, quotas.active - n.n)
    FROM counts n JOIN locked USING (quota_id)
    WHERE quotas.quota_id = n.quota_id
    RETURNING quotas.quota_id, quotas.tenant_id, quotas.job_type, n.n
),
events AS (
    INSERT INTO events (tenant_id, type, subject, data, trace_id, time)
    SELECT :tenant_id, 'job.succeeded', 'jobs/' || job_id,
           '{"attempt":' || attempts || ',"from":"leased","leaseId":' || to_json(lease_id)::text
           || ',"to":"succeeded","workerId":' || coalesce(to_json(lease_owner)::text, 'null')
           || '}',
           coalesce(trace_id, CAST(:trace_id AS text)), :now
    FROM done
),
resolved AS (  -- dead-letter entries whose replay just succeeded (issue 10); = ANY of
    -- an array, so an index scan of ix_deadletter_entries_replay_job whatever the
    -- planner guesses of done's size
    UPDATE deadletter_entries SET status = 'resolved', updated_at = :now
    WHERE replay_job_id = ANY(ARRAY(SELECT job_id FROM done)) AND status = 'replayed'
)
SELECT 'done' AS kind, job_id AS id, NULL::text AS tenant_id, job_type,
       0::bigint AS n, pack_run_id, owner, attempts, lease_owner, trace_parent, lease_id
FROM done
UNION ALL
SELECT 'released', quota_id, tenant_id, job_type, n, NULL, NULL, NULL, NULL, NULL, NULL
FROM released
"""
)


# One job type (the common case) is an equality, so `ix_jobs_ready` yields the
# candidates in lease order and the scan stops at LIMIT; several are `= ANY(...)`,
# which reads the eligible rows of those types and sorts them.
_ONE_TYPE = "job_type = :job_type"
_ANY_TYPE = "job_type = ANY(CAST(:job_types AS text[]))"
_PG_LEASE = {
    one: sa.text(_PG_LEASE_SQL.replace("{type_match}", _ONE_TYPE if one else _ANY_TYPE))
    for one in (True, False)
}
_PG_LEASE_FREE = {
    one: sa.text(_PG_LEASE_FREE_SQL.replace("{type_match}", _ONE_TYPE if one else _ANY_TYPE))
    for one in (True, False)
}


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return _aware(value).isoformat().replace("+00:00", "Z")


def _minute(now: datetime) -> int:
    return int(now.timestamp()) // 60


def _quota_states() -> sa.Select[Any]:
    """The asked quotas with their last-hour sum and oldest counted minute, built once:
    bound `tenant_id`, `job_types` (a list) and `minute_floor` (the minute an hour
    ago). Building this statement per call cost ~0.45 ms (expressions and cache key),
    more than the database's answer."""
    window = sa.and_(
        _minutes.c.quota_id == _quotas.c.quota_id,
        _minutes.c.minute > sa.bindparam("minute_floor", type_=sa.Integer()),
    )
    last_hour = (
        sa.select(sa.func.coalesce(sa.func.sum(_minutes.c.count), 0))
        .where(window)
        .scalar_subquery()
    )
    oldest = (
        sa.select(sa.func.min(_minutes.c.minute))
        .where(window, _minutes.c.count > 0)
        .scalar_subquery()
    )
    return sa.select(_quotas, last_hour.label("last_hour"), oldest.label("oldest_minute")).where(
        _quotas.c.tenant_id == sa.bindparam("tenant_id"),
        _quotas.c.job_type.in_(sa.bindparam("job_types", expanding=True)),
    )


QUOTA_STATES: sa.Select[Any] = _quota_states()
# The same, the rows locked in quota_id order (every writer's order) for the lease.
_QUOTA_STATES_LOCKED = QUOTA_STATES.order_by(_quotas.c.quota_id).with_for_update(of=_quotas)


def quota_state_params(tenant_id: str, job_types: Sequence[str], now: datetime) -> dict[str, Any]:
    """The bound values of `QUOTA_STATES` for `job_types` of `tenant_id` at `now`."""
    return {"tenant_id": tenant_id, "job_types": list(job_types), "minute_floor": _minute(now) - 60}


def quota_state(row: Any) -> QuotaState:
    """A quota row with its last-hour sum and oldest counted minute, as the planner
    reads it (leases and enqueue's throttled-at-start check share it)."""
    return QuotaState(
        quota_id=row.quota_id,
        job_type=row.job_type,
        paused=bool(row.paused),
        max_active=row.max_active,
        active=row.active,
        max_per_hour=row.max_per_hour,
        last_hour=int(row.last_hour or 0),
        oldest_minute=row.oldest_minute,
        burst=row.burst,
        refill_per_second=row.refill_per_second,
        tokens=row.tokens,
        tokens_at=_aware(row.tokens_at),
    )


class SqlLeases:
    """`LeaseStore` over a `Database`; `wakeups` hears what became leasable, `clock`
    gives the engine's time (seconds since the epoch), `endings` hears owned jobs that
    ended (`domain/job_endings.py`: complete, dead letter by failure or expiry)."""

    def __init__(
        self,
        db: Database,
        wakeups: Wakeups,
        clock: Callable[[], float] | None = None,
        endings: JobEndings | None = None,
    ) -> None:
        self._db = db
        self._sqlite = db.is_sqlite
        self._wakeups = wakeups
        self._endings = endings or JobEndings()
        self._clock = clock
        self._lock = asyncio.Lock()
        self._insert: Any = sqlite.insert if self._sqlite else postgresql.insert
        # Single statements that are their own transaction: no BEGIN/COMMIT round trips.
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        # (tenant, job types) whose last lease found a quota (PostgreSQL path choice).
        self._quoted: dict[tuple[str, tuple[str, ...]], bool] = {}

    def now(self) -> datetime:
        if self._clock is None:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self._clock(), UTC)

    def watch(self, tenant_id: str, job_types: Sequence[str]) -> Watch:
        return self._wakeups.watch(tenant_id, job_types)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if not self._sqlite:
            async with self._db.engine.begin() as conn:
                yield conn
            return
        async with self._lock, self._db.engine.connect() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    def _announce(self, woken: Iterable[Key]) -> None:
        for tenant_id, job_type in set(woken):
            self._wakeups.notify(tenant_id, job_type)

    # --- lease ------------------------------------------------------------------------

    async def lease(self, request: LeaseRequest, now: datetime) -> Leased:
        started = tracing.now_ns()
        leased = await self._lease(request, now)
        if started and leased.jobs:  # a `job.lease` span per job, in the job's trace
            tracing.record_transitions(
                "lease",
                (
                    (row.job_id, row.trace_parent, _span_attributes(row, _LEASED))
                    for row in leased.jobs
                ),
                started,
            )
        return leased

    async def _lease(self, request: LeaseRequest, now: datetime) -> Leased:
        expires_at = now + timedelta(seconds=request.lease_s)
        if self._sqlite:
            return await self._lease_with_quotas(request, now, expires_at)
        asked = (request.tenant_id, request.job_types)
        if asked in self._quoted:  # had a quota last time: lock them right away
            return await self._lease_with_quotas(request, now, expires_at)
        free, quota_types, more = await self._lease_free_pg(request, now, expires_at)
        room = request.max_jobs - len(free)
        if not quota_types or room <= 0:
            return Leased(free, more or bool(quota_types))
        capped = replace(request, job_types=tuple(quota_types), max_jobs=room)
        quoted = await self._lease_with_quotas(capped, now, expires_at)
        return Leased([*free, *quoted.jobs], more or quoted.more)

    async def _lease_free_pg(
        self, request: LeaseRequest, now: datetime, expires_at: datetime
    ) -> tuple[list[Any], list[str], bool]:
        """Lease the asked job types that have no quota; the ones that have one; whether
        eligible jobs of the first were left behind."""
        async with self._autocommit.connect() as conn:
            result = await conn.execute(
                _PG_LEASE_FREE[len(request.job_types) == 1],
                {
                    "tenant_id": request.tenant_id,
                    "job_types": list(request.job_types),
                    "job_type": request.job_types[0],
                    "now": now,
                    "max_jobs": request.max_jobs,
                    "worker_id": request.worker_id,
                    "expires_at": expires_at,
                    "trace_id": request.trace_id,
                },
            )
            rows = records(result.keys(), result.all())
        leased = [row for row in rows if row.job_id is not None]
        quota_types = list(rows[0].quota_types or ()) if rows else []
        self._remember(request, bool(quota_types))
        return leased, quota_types, bool(rows and rows[0].more)

    def _remember(self, request: LeaseRequest, quoted: bool) -> None:
        """Whether the asked job types had a quota, to choose the next lease's path;
        only a choice of statements: both apply every quota they find."""
        asked = (request.tenant_id, request.job_types)
        if not quoted:
            self._quoted.pop(asked, None)
        elif len(self._quoted) < _QUOTED_MAX or asked in self._quoted:
            self._quoted[asked] = True

    async def _lease_with_quotas(
        self, request: LeaseRequest, now: datetime, expires_at: datetime
    ) -> Leased:
        """The lease under quotas: lock them, lease within their caps, throttle the rest
        and take the slots, in one transaction. `more` on PostgreSQL: whether it took
        max_jobs (a hint that errs towards waking a waiter)."""
        async with self._transaction() as conn:
            quotas = [
                quota_state(row)
                for row in await conn.execute(
                    _QUOTA_STATES_LOCKED,
                    quota_state_params(request.tenant_id, request.job_types, now),
                )
            ]
            self._remember(request, bool(quotas))
            paused = {q.job_type for q in quotas if q.paused}
            job_types = [t for t in request.job_types if t not in paused]
            if not job_types:
                return Leased((), False)
            plans = {
                q.job_type: (q, plan_quota(q, now, request.max_jobs))
                for q in quotas
                if not q.paused
            }
            if not self._sqlite:  # one statement does it all
                rows = await self._lease_pg(conn, request, job_types, plans, now, expires_at)
                leased = [row for row in rows if row.take]
                return Leased(leased, len(leased) >= request.max_jobs)
            rows, more = await self._lease_sqlite(conn, request, job_types, plans, now, expires_at)
            if not rows:
                return Leased((), more)
            await insert_events(conn, [_lease_event(row, request, now) for row in rows])
            leased = [row for row in rows if row.take]
            await self._take_slots(conn, leased, plans, now)
        return Leased(leased, more)

    async def _lease_pg(
        self,
        conn: AsyncConnection,
        request: LeaseRequest,
        job_types: Sequence[str],
        plans: Mapping[str, tuple[QuotaState, QuotaPlan]],
        now: datetime,
        expires_at: datetime,
    ) -> list[Any]:
        caps = list(plans.values())
        result = await conn.execute(
            _PG_LEASE[len(job_types) == 1],
            {
                "job_type": job_types[0],
                "cap_types": [q.job_type for q, _ in caps],
                "cap_limits": [p.cap for _, p in caps],
                "cap_quotas": [q.quota_id for q, _ in caps],
                "cap_until": [p.until for _, p in caps],
                "cap_tokens": [p.tokens if q.refill_per_second > 0 else None for q, p in caps],
                "tenant_id": request.tenant_id,
                "job_types": list(job_types),
                "now": now,
                "minute": _minute(now),
                "max_jobs": request.max_jobs,
                "worker_id": request.worker_id,
                "expires_at": expires_at,
                "trace_id": request.trace_id,
            },
        )
        return records(result.keys(), result.all())

    async def _lease_sqlite(
        self,
        conn: AsyncConnection,
        request: LeaseRequest,
        job_types: Sequence[str],
        plans: Mapping[str, tuple[QuotaState, QuotaPlan]],
        now: datetime,
        expires_at: datetime,
    ) -> tuple[list[Any], bool]:
        """The leased and throttled rows; whether eligible jobs were left behind."""
        j = _jobs.c
        # The ready predicate spelled as the partial index `ix_jobs_ready` is (SQLite uses
        # a partial index only when the query's terms imply its WHERE, which bound
        # parameters never do: `status IN (?, ?, ?)` scanned the whole table).
        candidates = (
            await conn.execute(
                sa.select(j.job_id, j.job_type, j.status, j.trace_id)
                .where(
                    sa.text(JOBS_READY_PREDICATE),
                    j.tenant_id == request.tenant_id,
                    j.job_type == job_types[0]
                    if len(job_types) == 1
                    else j.job_type.in_(job_types),
                    j.next_eligible_at <= now,
                )
                .order_by(j.priority.desc(), j.next_eligible_at, j.job_id)
                .limit(request.max_jobs + 1)
            )
        ).all()
        more = len(candidates) > request.max_jobs
        candidates = candidates[: request.max_jobs]
        if not candidates:
            return [], more
        taken: Counter[str] = Counter()
        take: dict[str, bool] = {}
        leasing: dict[str | None, list[str]] = {}  # by the quota whose slot they take
        throttling: list[dict[str, Any]] = []
        for position, cand in enumerate(candidates, start=1):
            plan = plans.get(cand.job_type)
            ok = plan is None or taken[cand.job_type] < plan[1].cap
            take[cand.job_id] = ok
            if ok:
                taken[cand.job_type] += 1
                leasing.setdefault(plan[0].quota_id if plan else None, []).append(cand.job_id)
            else:
                assert plan is not None
                # Staggered by a microsecond per place, so the held-back jobs keep
                # their order among themselves (as on PostgreSQL).
                until = plan[1].until + timedelta(microseconds=position)
                throttling.append(
                    {"b_job_id": cand.job_id, "b_until": until, "trace_id": cand.trace_id}
                )
        changed: dict[str, Any] = {}
        for quota_id, ids in leasing.items():
            statement = (
                sa.update(_jobs)
                .where(j.job_id.in_(ids), j.status.in_(READY_STATUSES))
                .values(
                    status=_LEASED,
                    attempts=j.attempts + 1,
                    lease_id=sa.func.lower(sa.func.hex(sa.func.randomblob(16))),
                    lease_owner=request.worker_id,
                    lease_expires_at=expires_at,
                    next_eligible_at=None,
                    quota_id=quota_id,
                    updated_at=now,
                )
                .returning(*_jobs.c)
            )
            for row in await conn.execute(statement):
                changed[row.job_id] = row
        if throttling:
            # BEGIN IMMEDIATE holds the write lock: the candidates are still waiting.
            await conn.execute(
                sa.update(_jobs)
                .where(j.job_id == sa.bindparam("b_job_id"))
                .values(
                    status=JobStatus.THROTTLED.value,
                    lease_expires_at=None,
                    next_eligible_at=sa.bindparam("b_until", type_=j.next_eligible_at.type),
                    updated_at=now,
                ),
                throttling,
            )
            for item in throttling:
                changed[item["b_job_id"]] = _Throttled(
                    item["b_job_id"], item["b_until"], item["trace_id"]
                )
        rows: list[Any] = []
        for position, cand in enumerate(candidates, start=1):
            if cand.job_id in changed:
                rows.append(
                    _Annotated(changed[cand.job_id], cand.status, take[cand.job_id], position)
                )
        return rows, more

    async def _take_slots(
        self,
        conn: AsyncConnection,
        leased: Sequence[Any],
        plans: Mapping[str, tuple[QuotaState, QuotaPlan]],
        now: datetime,
    ) -> None:
        counts = Counter(row.job_type for row in leased if row.job_type in plans)
        if not counts:
            return
        minute = _minute(now)
        for job_type in sorted(counts, key=lambda t: plans[t][0].quota_id):
            quota, plan = plans[job_type]
            n = counts[job_type]
            values: dict[str, Any] = {"active": _quotas.c.active + n}
            if quota.refill_per_second > 0:
                values["tokens"] = max(0.0, plan.tokens - n)
                values["tokens_at"] = now
            await conn.execute(
                sa.update(_quotas).where(_quotas.c.quota_id == quota.quota_id).values(**values)
            )
            upsert = self._insert(_minutes).values(quota_id=quota.quota_id, minute=minute, count=n)
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[_minutes.c.quota_id, _minutes.c.minute],
                    set_={"count": _minutes.c.count + upsert.excluded.count},
                )
            )

    # --- heartbeat, complete, fail ----------------------------------------------------

    async def _current(
        self, conn: AsyncConnection, tenant_id: str, tokens: Iterable[FencingToken]
    ) -> dict[str, Any]:
        ids = sorted({token.job_id for token in tokens})
        if not ids:
            return {}
        statement = (
            sa.select(_jobs)
            .where(_jobs.c.tenant_id == tenant_id, _jobs.c.job_id.in_(ids))
            .order_by(_jobs.c.job_id)
            .with_for_update()
        )
        return {row.job_id: row for row in await conn.execute(statement)}

    @staticmethod
    def _fence() -> list[sa.ColumnElement[bool]]:
        return [
            _jobs.c.tenant_id == sa.bindparam("b_tenant_id"),
            _jobs.c.job_id == sa.bindparam("b_job_id"),
            _jobs.c.lease_id == sa.bindparam("b_lease_id"),
            _jobs.c.attempts == sa.bindparam("b_attempt"),
            _jobs.c.status == _LEASED,
        ]

    @staticmethod
    def _fence_params(tenant_id: str, token: FencingToken) -> dict[str, Any]:
        return {
            "b_tenant_id": tenant_id,
            "b_job_id": token.job_id,
            "b_lease_id": token.lease_id,
            "b_attempt": token.attempt,
        }

    def _judge(
        self, tokens: Sequence[FencingToken], rows: Mapping[str, Any]
    ) -> tuple[list[Outcome | None], list[int]]:
        """Per token: an Outcome when it fails (stale or canceled), None when current;
        and the indexes of the current ones (a job named twice counts once)."""
        judged: list[Outcome | None] = []
        fresh: list[int] = []
        seen: set[str] = set()
        for index, token in enumerate(tokens):
            row = rows.get(token.job_id)
            matches = (
                row is not None and row.lease_id == token.lease_id and row.attempts == token.attempt
            )
            if row is None:
                judged.append(Outcome(token, error=stale(token, "not held by this lease")))
            elif matches and row.status == _LEASED and token.job_id not in seen:
                seen.add(token.job_id)
                judged.append(None)
                fresh.append(index)
            elif matches and row.status == JobStatus.CANCELED.value:
                judged.append(Outcome(token, error=canceled(token), canceled=True))
            else:
                status = row.status if token.job_id not in seen else "finished by this call"
                judged.append(Outcome(token, error=stale(token, status)))
        return judged, fresh

    async def heartbeat(
        self, tenant_id: str, tokens: Sequence[FencingToken], expires_at: datetime, now: datetime
    ) -> list[Outcome]:
        async with self._transaction() as conn:
            rows = await self._current(conn, tenant_id, tokens)
            judged, fresh = self._judge(tokens, rows)
            if fresh:
                await conn.execute(
                    sa.update(_jobs).where(*self._fence()).values(lease_expires_at=expires_at),
                    [self._fence_params(tenant_id, tokens[i]) for i in fresh],
                )
        for index in fresh:
            judged[index] = Outcome(tokens[index], status=_LEASED, expires_at=expires_at)
        return [outcome for outcome in judged if outcome is not None]

    async def complete(
        self, tenant_id: str, completions: Sequence[Completion], now: datetime, trace_id: str | None
    ) -> list[Outcome]:
        if self._sqlite:
            return await self._complete_in_steps(tenant_id, completions, now, trace_id)
        return await self._complete_pg(tenant_id, completions, now, trace_id)

    async def _complete_pg(
        self, tenant_id: str, completions: Sequence[Completion], now: datetime, trace_id: str | None
    ) -> list[Outcome]:
        if not completions:
            return []
        started = tracing.now_ns()
        async with self._autocommit.connect() as conn:
            result = await conn.execute(
                _PG_COMPLETE,
                {
                    "job_ids": [c.token.job_id for c in completions],
                    "lease_ids": [c.token.lease_id for c in completions],
                    "attempts": [c.token.attempt for c in completions],
                    "results": [c.result for c in completions],
                    "tenant_id": tenant_id,
                    "now": now,
                    "trace_id": trace_id,
                },
            )
            rows = records(result.keys(), result.all())
            # By the whole token: one call may carry a stale and the current token of
            # the same job (a worker that leased it again after its lease expired).
            done = {(row.id, row.lease_id, row.attempts) for row in rows if row.kind == "done"}
            if started:
                tracing.record_transitions(
                    "complete",
                    (
                        (row.id, row.trace_parent, _span_attributes(row, _SUCCEEDED))
                        for row in rows
                        if row.kind == "done"
                    ),
                    started,
                )
            if self._endings.listening:
                self._endings.publish(
                    [
                        JobEnding(tenant_id, row.id, _SUCCEEDED, row.pack_run_id, row.owner)
                        for row in rows
                        if row.kind == "done" and owned(row.pack_run_id, row.owner)
                    ]
                )
            woken: list[Key] = []
            for row in rows:  # a hint, not accounting: the freed slots' next jobs
                if row.kind == "released":
                    await conn.execute(_pull_forward(row.tenant_id, row.job_type, row.n, now))
                    woken.append((row.tenant_id, row.job_type))
            outcomes: list[Outcome] = []
            missed: list[int] = []
            for index, completion in enumerate(completions):
                token = completion.token
                key = (token.job_id, token.lease_id, token.attempt)
                if key in done:
                    done.discard(key)
                    outcomes.append(Outcome(token, status=JobStatus.SUCCEEDED.value))
                else:
                    outcomes.append(Outcome(token))
                    missed.append(index)
            if missed:  # why each was refused, for its message (nothing changes)
                current = await self._current(conn, tenant_id, [outcomes[i].token for i in missed])
                for index in missed:
                    token = outcomes[index].token
                    held = current.get(token.job_id)
                    if held is None:
                        outcomes[index] = Outcome(
                            token, error=stale(token, "not held by this lease")
                        )
                    elif held.status == JobStatus.CANCELED.value and (
                        held.lease_id,
                        held.attempts,
                    ) == (token.lease_id, token.attempt):
                        outcomes[index] = Outcome(token, error=canceled(token), canceled=True)
                    else:
                        outcomes[index] = Outcome(token, error=stale(token, held.status))
        self._announce(woken)
        return outcomes

    async def _complete_in_steps(
        self, tenant_id: str, completions: Sequence[Completion], now: datetime, trace_id: str | None
    ) -> list[Outcome]:
        tokens = [c.token for c in completions]
        woken: list[Key] = []
        started = tracing.now_ns()
        async with self._transaction() as conn:
            rows = await self._current(conn, tenant_id, tokens)
            judged, fresh = self._judge(tokens, rows)
            if fresh:
                await conn.execute(
                    sa.update(_jobs)
                    .where(*self._fence())
                    .values(
                        status=JobStatus.SUCCEEDED.value,
                        result=sa.bindparam("b_result"),
                        lease_expires_at=None,
                        next_eligible_at=None,
                        quota_id=None,
                        finished_at=now,
                        updated_at=now,
                    ),
                    [
                        {
                            **self._fence_params(tenant_id, tokens[i]),
                            "b_result": completions[i].result,
                        }
                        for i in fresh
                    ],
                )
                woken = await release_slots(
                    conn, [rows[tokens[i].job_id].quota_id for i in fresh], now=now
                )
                await insert_events(
                    conn,
                    [
                        _finish_event(
                            tenant_id,
                            tokens[i],
                            JobAction.COMPLETE,
                            JobStatus.SUCCEEDED,
                            now,
                            rows[tokens[i].job_id].trace_id or trace_id,
                            rows[tokens[i].job_id].lease_owner,
                        )
                        for i in fresh
                    ],
                )
                replays = [tokens[i].job_id for i in fresh if rows[tokens[i].job_id].replay_of]
                await resolve_replays(conn, replays, now=now)  # dead letters (issue 10)
        self._announce(woken)
        if fresh and self._endings.listening:
            self._endings.publish(
                _endings(tenant_id, [rows[tokens[i].job_id] for i in fresh], _SUCCEEDED)
            )
        if started and fresh:
            tracing.record_transitions(
                "complete",
                (
                    (row.job_id, row.trace_parent, _span_attributes(row, _SUCCEEDED))
                    for row in (rows[tokens[i].job_id] for i in fresh)
                ),
                started,
            )
        for index in fresh:
            judged[index] = Outcome(tokens[index], status=JobStatus.SUCCEEDED.value)
        return [outcome for outcome in judged if outcome is not None]

    async def fail(
        self,
        tenant_id: str,
        failures: Sequence[Failure],
        now: datetime,
        trace_id: str | None,
        random: Callable[[], float],
    ) -> list[Outcome]:
        tokens = [f.token for f in failures]
        woken: list[Key] = []
        decided: dict[int, tuple[JobStatus, datetime | None]] = {}
        started = tracing.now_ns()
        async with self._transaction() as conn:
            rows = await self._current(conn, tenant_id, tokens)
            judged, fresh = self._judge(tokens, rows)
            if fresh:
                params = []
                events = []
                for i in fresh:
                    failure, row = failures[i], rows[tokens[i].job_id]
                    final = not failure.retryable or row.attempts >= row.max_attempts
                    retry_at: datetime | None = None
                    if final:
                        status, action = JobStatus.DEAD_LETTERED, JobAction.DEAD_LETTER
                    else:
                        status, action = JobStatus.FAILED, JobAction.FAIL
                        delay = backoff_delay(
                            row.attempts,
                            initial_s=row.backoff_initial_s,
                            max_s=row.backoff_max_s,
                            multiplier=row.backoff_multiplier,
                            jitter=row.backoff_jitter,
                            random=random,
                        )
                        retry_at = now + timedelta(seconds=delay)
                    decided[i] = (status, retry_at)
                    error = _error(
                        failure.category,
                        failure.code,
                        failure.message,
                        retryable=failure.retryable,
                        attempt=row.attempts,
                        at=now,
                    )
                    params.append(
                        {
                            **self._fence_params(tenant_id, tokens[i]),
                            "b_status": status.value,
                            "b_next": retry_at,
                            "b_error": error,
                            "b_finished": now if final else None,
                        }
                    )
                    extra = {
                        "error": json.loads(error),
                        "details": dict(failure.details),
                    }
                    if retry_at is not None:
                        extra["nextEligibleAt"] = _iso(retry_at)
                    events.append(
                        _finish_event(
                            tenant_id,
                            tokens[i],
                            action,
                            status,
                            now,
                            row.trace_id or trace_id,
                            row.lease_owner,
                            extra,
                        )
                    )
                await conn.execute(
                    sa.update(_jobs)
                    .where(*self._fence())
                    .values(
                        status=sa.bindparam("b_status"),
                        next_eligible_at=sa.bindparam(
                            "b_next", type_=_jobs.c.next_eligible_at.type
                        ),
                        last_error=sa.bindparam("b_error"),
                        finished_at=sa.bindparam("b_finished", type_=_jobs.c.finished_at.type),
                        lease_expires_at=None,
                        quota_id=None,
                        updated_at=now,
                    ),
                    params,
                )
                woken = await release_slots(
                    conn, [rows[tokens[i].job_id].quota_id for i in fresh], now=now
                )
                await insert_events(conn, events)
                dead = [
                    dead_lettered(
                        rows[tokens[i].job_id],
                        failures[i].category,
                        failures[i].code,
                        failures[i].message,
                        retryable=failures[i].retryable,
                    )
                    for i in fresh
                    if decided[i][0] is JobStatus.DEAD_LETTERED
                ]
                await record_dead_letters(conn, dead, now=now)  # their entries (issue 10)
        self._announce(woken)
        if self._endings.listening:
            final = [
                tokens[i].job_id
                for i, (status, _) in decided.items()
                if status is JobStatus.DEAD_LETTERED
            ]
            self._endings.publish(
                _endings(tenant_id, [rows[job_id] for job_id in final], _DEAD_LETTERED)
            )
        if started:
            for index, (status, _) in decided.items():
                failure, row = failures[index], rows[tokens[index].job_id]
                tracing.record_transitions(
                    "dead_letter" if status is JobStatus.DEAD_LETTERED else "fail",
                    [(row.job_id, row.trace_parent, _span_attributes(row, status.value))],
                    started,
                    error=f"{failure.category}/{failure.code}: {failure.message}",
                )
        for index, (status, retry_at) in decided.items():
            judged[index] = Outcome(tokens[index], status=status.value, next_eligible_at=retry_at)
        return [outcome for outcome in judged if outcome is not None]

    # --- expiry -----------------------------------------------------------------------

    async def expire(self, now: datetime, limit: int) -> int:
        j = _jobs.c
        woken: list[Key] = []
        started = tracing.now_ns()
        async with self._transaction() as conn:
            expired = (
                await conn.execute(
                    sa.select(_jobs)
                    # as `ix_jobs_lease_expiry`'s WHERE is spelled, so SQLite (and a
                    # generic PostgreSQL plan) can use that partial index
                    .where(sa.text("status = 'leased'"), j.lease_expires_at <= now)
                    .order_by(j.lease_expires_at, j.job_id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not expired:
                return 0
            params = []
            events = []
            dead: list[DeadLettered] = []
            for row in expired:
                final = row.attempts >= row.max_attempts
                status = JobStatus.DEAD_LETTERED if final else JobStatus.QUEUED
                action = JobAction.EXPIRE_FINAL if final else JobAction.EXPIRE
                token = FencingToken(row.job_id, row.lease_id, row.attempts)
                message = f"the lease of worker {row.lease_owner!r} expired without a completion"
                error = _error(
                    LEASE_EXPIRED_CATEGORY,
                    LEASE_EXPIRED_CODE,
                    message,
                    retryable=True,
                    attempt=row.attempts,
                    at=now,
                )
                if final:
                    dead.append(
                        dead_lettered(
                            row, LEASE_EXPIRED_CATEGORY, LEASE_EXPIRED_CODE, message, retryable=True
                        )
                    )
                params.append(
                    {
                        **self._fence_params(row.tenant_id, token),
                        "b_status": status.value,
                        "b_next": None if final else now,
                        "b_error": error,
                        "b_finished": now if final else None,
                    }
                )
                events.append(
                    _finish_event(
                        row.tenant_id,
                        token,
                        action,
                        status,
                        now,
                        row.trace_id,
                        row.lease_owner,
                        {"error": json.loads(error)},
                    )
                )
                if not final:
                    woken.append((row.tenant_id, row.job_type))
            await conn.execute(
                sa.update(_jobs)
                .where(*self._fence())
                .values(
                    status=sa.bindparam("b_status"),
                    next_eligible_at=sa.bindparam("b_next", type_=j.next_eligible_at.type),
                    last_error=sa.bindparam("b_error"),
                    finished_at=sa.bindparam("b_finished", type_=j.finished_at.type),
                    lease_expires_at=None,
                    quota_id=None,
                    updated_at=now,
                ),
                params,
            )
            woken += await release_slots(conn, [row.quota_id for row in expired], now=now)
            await insert_events(conn, events)
            await record_dead_letters(conn, dead, now=now)  # their entries (issue 10)
        self._announce(woken)
        if self._endings.listening:
            self._endings.publish(
                [
                    JobEnding(row.tenant_id, row.job_id, _DEAD_LETTERED, row.pack_run_id, row.owner)
                    for row in expired
                    if row.attempts >= row.max_attempts and owned(row.pack_run_id, row.owner)
                ]
            )
        if started:
            for row in expired:
                final = row.attempts >= row.max_attempts
                status = JobStatus.DEAD_LETTERED if final else JobStatus.QUEUED
                tracing.record_transitions(
                    "dead_letter" if final else "expire",
                    [(row.job_id, row.trace_parent, _span_attributes(row, status.value))],
                    started,
                    error=f"{LEASE_EXPIRED_CATEGORY}/{LEASE_EXPIRED_CODE}: the lease expired",
                )
        return len(expired)


class _Throttled:
    """What a throttled candidate's event needs (SQLite: no RETURNING per row)."""

    __slots__ = ("job_id", "next_eligible_at", "trace_id")

    def __init__(self, job_id: str, next_eligible_at: datetime, trace_id: str | None) -> None:
        self.job_id = job_id
        self.next_eligible_at = next_eligible_at
        self.trace_id = trace_id


class _Annotated:
    """A SQLite RETURNING row with what the PostgreSQL statement returns alongside."""

    __slots__ = ("_row", "position", "prior_status", "take")

    def __init__(self, row: Any, prior_status: str, take: bool, position: int) -> None:
        self._row = row
        self.prior_status = prior_status
        self.take = take
        self.position = position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


async def release_slots(
    conn: AsyncConnection, quota_ids: Iterable[str | None], *, now: datetime
) -> list[Key]:
    """Release the quota slots the given jobs held (their `jobs.quota_id`, None for
    none), in `conn`'s transaction: each quota's `active` drops by its count (never
    below 0) and as many of its throttled jobs become eligible now (best first), so a
    freed slot is used at once instead of after the throttle delay. The caller clears
    `jobs.quota_id` in its own UPDATE of those jobs (the same transaction). Returns
    the (tenant, job type) keys to announce with `Wakeups.notify` after the commit."""
    counts = Counter(q for q in quota_ids if q is not None)
    woken: list[Key] = []
    for quota_id in sorted(counts):
        n = counts[quota_id]
        q = _quotas.c
        row = (
            await conn.execute(
                sa.update(_quotas)
                .where(q.quota_id == quota_id)
                .values(active=sa.case((q.active > n, q.active - n), else_=0))
                .returning(q.tenant_id, q.job_type, q.max_active)
            )
        ).first()
        if row is None:  # the quota was deleted meanwhile: nothing to release
            continue
        await conn.execute(_pull_forward(row.tenant_id, row.job_type, n, now))
        woken.append((row.tenant_id, row.job_type))
    return woken


def _pull_forward(tenant_id: str, job_type: str, n: int, now: datetime) -> sa.Update:
    """Make the `n` best throttled jobs of a job type eligible now (slots were freed)."""
    j = _jobs.c
    best = (
        sa.select(j.job_id)
        .where(
            j.tenant_id == tenant_id,
            j.job_type == job_type,
            j.status == JobStatus.THROTTLED.value,
            j.next_eligible_at > now,
        )
        .order_by(j.priority.desc(), j.next_eligible_at, j.job_id)
        .limit(n)
    )
    return sa.update(_jobs).where(j.job_id.in_(best.scalar_subquery())).values(next_eligible_at=now)


async def release_slot(
    conn: AsyncConnection, *, job_id: str, quota_id: str, now: datetime | None = None
) -> bool:
    """Release the slot of `quota_id` that `job_id` holds, in `conn`'s transaction (a
    leased job being canceled): `jobs.quota_id` is cleared only if it still names
    `quota_id`, and only then does `release_slots` give the slot back. True when a
    slot was released. The throttled job it makes eligible is found by the workers'
    poll fallback (no wake-up is announced from inside another unit of work)."""
    cleared = await conn.execute(
        sa.update(_jobs)
        .where(_jobs.c.job_id == job_id, _jobs.c.quota_id == quota_id)
        .values(quota_id=None)
    )
    if cleared.rowcount != 1:
        return False
    await release_slots(conn, [quota_id], now=now or datetime.now(UTC))
    return True


def _span_attributes(row: Any, status: str) -> dict[str, str | int]:
    """A job transition span's attributes: its type, attempt, worker and new status."""
    attributes: dict[str, str | int] = {
        "job.type": row.job_type,
        "job.attempt": row.attempts,
        "job.status": status,
    }
    if row.lease_owner:
        attributes["job.worker_id"] = row.lease_owner
    return attributes


def _endings(tenant_id: str, rows: Iterable[Any], status: str) -> list[JobEnding]:
    """The endings to announce of `rows` (jobs rows read before they ended as `status`):
    the owned ones (`domain/job_endings.py`)."""
    return [
        JobEnding(tenant_id, row.job_id, status, row.pack_run_id, row.owner)
        for row in rows
        if owned(row.pack_run_id, row.owner)
    ]


def _error(
    category: str, code: str, message: str, *, retryable: bool, attempt: int, at: datetime
) -> str:
    """`jobs.last_error`: the JobError as compact JSON text (the API's field names)."""
    return json.dumps(
        {
            "category": category,
            "code": code,
            "message": message,
            "retryable": retryable,
            "attempt": attempt,
            "failedAt": _iso(at),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _lease_event(row: Any, request: LeaseRequest, now: datetime) -> NewEvent:
    subject = f"jobs/{row.job_id}"
    if row.take:
        data: dict[str, Any] = {
            "from": row.prior_status,
            "to": _LEASED,
            "attempt": row.attempts,
            "leaseId": row.lease_id,
            "workerId": request.worker_id,
        }
        kind = EVENT_TYPES[JobAction.LEASE]
    else:
        data = {
            "from": row.prior_status,
            "to": JobStatus.THROTTLED.value,
            "nextEligibleAt": _iso(row.next_eligible_at),
        }
        kind = EVENT_TYPES[JobAction.THROTTLE]
    return NewEvent(
        tenant_id=request.tenant_id,
        type=kind,
        subject=subject,
        data=data,
        trace_id=row.trace_id or request.trace_id,  # the job's trace (0014), else the call's
        time=now,
    )


def _finish_event(
    tenant_id: str,
    token: FencingToken,
    action: JobAction,
    status: JobStatus,
    now: datetime,
    trace_id: str | None,
    worker_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> NewEvent:
    data: dict[str, Any] = {
        "from": _LEASED,
        "to": status.value,
        "attempt": token.attempt,
        "leaseId": token.lease_id,
        "workerId": worker_id,
        **(extra or {}),
    }
    return NewEvent(
        tenant_id=tenant_id,
        type=EVENT_TYPES[action],
        subject=f"jobs/{token.job_id}",
        data=data,
        trace_id=trace_id,
        time=now,
    )
