"""The only `table=True` classes: the database schema, as SQLModel rows.

API shapes are the protos; these are storage rows, converted in `server/services`.
Names are compared byte-wise on every backend (`C` collation on PostgreSQL, SQLite's
default BINARY) so keyset pages come out in the same order everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Byte-wise ordering on PostgreSQL; SQLite compares BINARY already.
SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"

    tenant_id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_sources_tenant_name"),
        sa.Index("ix_sources_tenant_name_id", "tenant_id", "name", "source_id"),
    )

    source_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    name: str = Field(max_length=200, sa_type=SortableText)
    source_type: str = Field(max_length=64)
    enabled: bool = True
    paused: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


# --- issue 10 block: schedules and backfills --------------------------------------


class ScheduleRow(SQLModel, table=True):
    """The schedule of a scheduler source (issue 10; DESIGN §9: a row with a due time).

    `next_run_at` is the next cron tick (UTC) the schedule fires at: the scheduler
    loop of any replica claims due rows (`next_run_at <= now`, `ix_schedules_due`)
    with `SELECT .. FOR UPDATE SKIP LOCKED` (SQLite serialises writers), enqueues
    their ticks' jobs and moves `next_run_at` to the tick after now, all in one
    transaction, so no tick fires twice; the jobs' event-time idempotency keys make
    that true even across a lost update. `last_run_at` is the last tick that
    enqueued a job. The job template is stored with its defaults applied (the
    effective values `validate_enqueue` computes): every tick's job, and a
    backfill's job for the same tick, hash to the same request.
    """

    __tablename__ = "schedules"
    __table_args__ = (sa.Index("ix_schedules_due", "next_run_at"),)

    source_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    cron: str = Field(max_length=200)
    time_zone: str = Field(max_length=64)
    misfire_policy: str = Field(max_length=16)
    job_type: str = Field(max_length=64)
    priority: int = 0
    payload: str | None = Field(default=None, sa_type=sa.Text)
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    next_run_at: datetime = Field(sa_type=Timestamp)
    last_run_at: datetime | None = Field(default=None, sa_type=Timestamp)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class BackfillRow(SQLModel, table=True):
    """A backfill (issue 10, seed 003): a source or job type re-run over the event-time
    window [window_start, window_end).

    `scope` is what duplicate suppression compares ("source:{id}" for a scheduler
    source, "source:{id}/jobType:{type}", "jobType:{type}"); `ix_backfills_scope`
    finds a tenant's backfills of one scope by window. `status` is stored as active
    or canceled; completed is read off its jobs (`backfill_jobs`). `jobs_created` and
    `jobs_existing` count what the request found, kept when its jobs are pruned.
    Listings run newest first over (created_at, backfill_id), read backwards.
    """

    __tablename__ = "backfills"
    __table_args__ = (
        sa.Index("ix_backfills_tenant_created_id", "tenant_id", "created_at", "backfill_id"),
        sa.Index("ix_backfills_scope", "tenant_id", "scope", "window_start"),
    )

    backfill_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    scope: str = Field(max_length=200)
    source_id: str = Field(max_length=64)
    job_type: str = Field(max_length=64)
    window_start: datetime = Field(sa_type=Timestamp)
    window_end: datetime = Field(sa_type=Timestamp)
    reason: str = Field(max_length=256)
    ticket: str | None = Field(default=None, max_length=128)
    status: str = Field(max_length=16)
    slice_s: float | None = None
    jobs_created: int = 0
    jobs_existing: int = 0
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class BackfillJobRow(SQLModel, table=True):
    """A job covering a backfill's window (issue 10): `created` when the backfill
    enqueued it, false when its tick or slice already had it (same event-time key).
    Progress counts these jobs by status; cancel cancels the waiting created ones."""

    __tablename__ = "backfill_jobs"

    backfill_id: str = Field(primary_key=True, max_length=64)
    job_id: str = Field(primary_key=True, max_length=64)
    created: bool


class AuditEntryRow(SQLModel, table=True):
    """One operator action, written in the same transaction as the change it records.

    `reason`/`ticket` are the X-Stella-Operator-* headers of the call; `token_id` and
    the quota/backfill reason and ticket are the claims of the token that made it
    (seed 003), so an entry says both why the operator acted and why the token was
    granted. Listings run newest first over (created_at, entry_id), which the index
    serves backwards; entry_id compares byte-wise so ties order alike everywhere.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (sa.Index("ix_audit_tenant_time_id", "tenant_id", "created_at", "entry_id"),)

    entry_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str | None = Field(default=None, max_length=64)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=200)
    resource: str = Field(max_length=400)
    reason: str | None = Field(default=None, max_length=1024)
    ticket: str | None = Field(default=None, max_length=256)
    token_id: str | None = Field(default=None, max_length=64)
    quota_reason: str | None = Field(default=None, max_length=256)
    quota_ticket: str | None = Field(default=None, max_length=128)
    backfill_reason: str | None = Field(default=None, max_length=256)
    backfill_ticket: str | None = Field(default=None, max_length=128)
    trace_id: str = Field(max_length=64)
    before: str | None = Field(default=None, sa_type=sa.Text)
    after: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class ServerSecretRow(SQLModel, table=True):
    """Secrets every replica must share (e.g. the page-token key), created once."""

    __tablename__ = "server_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=512)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class OAuthClientRow(SQLModel, table=True):
    """An OAuth client (machine identity) of the client credentials grant.

    Either bound to one tenant (`tenant_id`, immutable) or an operator client
    (`tenant_id` NULL) that may act for the tenants in `operator_tenants`. The
    secret is stored only as a scrypt hash (server/identity/authorization_server/passwords.py).
    """

    __tablename__ = "oauth_clients"

    client_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    secret_hash: str = Field(max_length=256)
    display_name: str = Field(default="", max_length=200)
    tenant_id: str | None = Field(
        default=None, max_length=64, foreign_key="tenants.tenant_id", index=True
    )
    operator_tenants: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    permissions: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    require_dpop: bool = False
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class SigningKeyRow(SQLModel, table=True):
    """An access-token signing key; `state` is current, previous or retired.

    The private JWK is stored as plain JSON: encryption at rest (KMS, sealed
    secrets) is out of scope here and belongs to the database's protection.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (sa.Index("ix_signing_keys_state", "state"),)

    kid: str = Field(primary_key=True, max_length=128)
    alg: str = Field(max_length=16)
    private_jwk: str = Field(sa_type=sa.Text)
    public_jwk: str = Field(sa_type=sa.Text)
    state: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    retired_at: datetime | None = Field(default=None, sa_type=Timestamp)


class RevokedTokenRow(SQLModel, table=True):
    """A revoked access token, kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (sa.Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: str = Field(primary_key=True, max_length=128)
    client_id: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=Timestamp)
    revoked_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class DpopProofRow(SQLModel, table=True):
    """A DPoP proof already accepted by some replica: the jti replay cache (RFC 9449 §11.1).

    `proof_key` is hex SHA-256 of the proof key's thumbprint and the `jti`; inserting it
    is the check (the primary key refuses a second use). `expires_at_ms` is when the
    proof's `iat` window closes, in epoch milliseconds of the identity wall clock, after
    which the row may be overwritten or purged.
    """

    __tablename__ = "dpop_proofs"
    __table_args__ = (sa.Index("ix_dpop_proofs_expires_at_ms", "expires_at_ms"),)

    proof_key: str = Field(primary_key=True, max_length=64)
    expires_at_ms: int = Field(sa_type=sa.BigInteger)


class AuthFailureRow(SQLModel, table=True):
    """Consecutive failed client authentications of one client id, for the throttle.

    `failures` counts failures since the last success; the row lapses `expires_at_ms`
    (the window after the last failure, epoch milliseconds) and is then counted afresh.
    """

    __tablename__ = "auth_failures"
    __table_args__ = (sa.Index("ix_auth_failures_expires_at_ms", "expires_at_ms"),)

    client_id: str = Field(primary_key=True, max_length=128)
    failures: int
    last_failure_ms: int = Field(sa_type=sa.BigInteger)
    expires_at_ms: int = Field(sa_type=sa.BigInteger)


# Statuses of a job waiting to be leased (DESIGN §9): the lease query's predicate,
# spelled exactly as the partial index `ix_jobs_ready` is, so PostgreSQL and SQLite
# match the query to the index.
READY_STATUSES: tuple[str, ...] = ("queued", "throttled", "failed")
JOBS_READY_PREDICATE = "status IN ('queued', 'throttled', 'failed')"


class JobRow(SQLModel, table=True):
    """One job (DESIGN §4.1, §9); the hot table, kept small by pruning finished rows.

    States and transitions: `server/domain/job_states.py`. JSON values (`payload`,
    `result`, `last_error`) are stored as compact JSON text. Times are UTC.

    - Waiting jobs (`status` in READY_STATUSES) are leasable from `next_eligible_at`
      (runAt, then the retry backoff or the quota delay); `ix_jobs_ready` serves the
      one-statement lease of one tenant and job type, priority first, then longest
      eligible, then job_id: on PostgreSQL
      `WITH c AS MATERIALIZED (SELECT job_id FROM jobs WHERE tenant_id = :t AND
      job_type = :jt AND status IN ('queued', 'throttled', 'failed') AND
      next_eligible_at <= :now ORDER BY priority DESC, next_eligible_at, job_id
      LIMIT :n FOR UPDATE SKIP LOCKED) UPDATE jobs SET status = 'leased', ... FROM c
      WHERE jobs.job_id = c.job_id RETURNING jobs.*`. `next_eligible_at` is NULL
      outside the waiting states.
    - A lease sets `lease_id` (new per lease), `lease_owner` (worker id),
      `lease_expires_at`, `attempts += 1` and `quota_id` when the job took a slot of
      its type's quota. The fencing token is (job_id, lease_id, attempts): a
      heartbeat/complete/fail matches `WHERE job_id = :j AND lease_id = :l AND
      attempts = :a AND status = 'leased'`. `lease_id` stays after the lease ends
      (a canceled job's worker is told CANCELLED, not FAILED_PRECONDITION).
    - `quota_id` names the quota whose `active` slot this job holds, NULL when it
      holds none: releasing the slot (complete, fail, expiry, cancel of a leased
      job) decrements that quota row and clears it in the same transaction, so a
      slot is released exactly once and never against a quota re-created since.
    - `ix_jobs_lease_expiry` finds expired leases for the reaper;
      `ix_jobs_finished` the pruning batches (finished_at set once a job reaches
      succeeded, canceled or dead_lettered); `ix_jobs_tenant_created_id` the keyset
      listing (createdAt desc, jobId desc, read backwards).
    - Idempotency: `uq_jobs_tenant_idempotency_key` is partial (WHERE
      idempotency_key IS NOT NULL): `INSERT .. ON CONFLICT (tenant_id,
      idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING` (SQLAlchemy
      `index_where=`). `request_hash` is the hex SHA-256 of the canonical enqueue
      request, compared on a repeat (same hash: the existing job; else 409); NULL
      for a job without a key. A key becomes free again when its job is pruned.
    - Backoff: the n-th retry waits min(backoff_max_s, backoff_initial_s *
      backoff_multiplier^(n - 1)) * uniform(1 - backoff_jitter, 1) seconds.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index(
            "ix_jobs_ready",
            "tenant_id",
            "job_type",
            sa.text("priority DESC"),
            "next_eligible_at",
            "job_id",
            postgresql_where=sa.text(JOBS_READY_PREDICATE),
            sqlite_where=sa.text(JOBS_READY_PREDICATE),
        ),
        sa.Index(
            "uq_jobs_tenant_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        ),
        sa.Index("ix_jobs_tenant_created_id", "tenant_id", "created_at", "job_id"),
        sa.Index(
            "ix_jobs_lease_expiry",
            "lease_expires_at",
            postgresql_where=sa.text("status = 'leased'"),
            sqlite_where=sa.text("status = 'leased'"),
        ),
        sa.Index(
            "ix_jobs_finished",
            "finished_at",
            postgresql_where=sa.text("finished_at IS NOT NULL"),
            sqlite_where=sa.text("finished_at IS NOT NULL"),
        ),
        # The jobs of a pack run / of another engine's item (domain/job_endings.py).
        sa.Index(
            "ix_jobs_pack_run",
            "pack_run_id",
            postgresql_where=sa.text("pack_run_id IS NOT NULL"),
            sqlite_where=sa.text("pack_run_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_jobs_owner",
            "owner",
            postgresql_where=sa.text("owner IS NOT NULL"),
            sqlite_where=sa.text("owner IS NOT NULL"),
        ),
    )

    job_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    job_type: str = Field(max_length=64, sa_type=SortableText)
    source_id: str = Field(max_length=64)
    status: str = Field(max_length=16)
    priority: int = 0
    payload: str | None = Field(default=None, sa_type=sa.Text)
    result: str | None = Field(default=None, sa_type=sa.Text)
    attempts: int = 0
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    run_at: datetime = Field(sa_type=Timestamp)
    next_eligible_at: datetime | None = Field(default=None, sa_type=Timestamp)
    lease_id: str | None = Field(default=None, max_length=64)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = Field(default=None, sa_type=Timestamp)
    quota_id: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    idempotency_key: str | None = Field(default=None, max_length=200)
    request_hash: str | None = Field(default=None, max_length=64)
    replay_of: str | None = Field(default=None, max_length=64)
    pack_run_id: str | None = Field(default=None, max_length=64)
    event_time: datetime | None = Field(default=None, sa_type=Timestamp)  # schedules (issue 10)
    # The W3C traceparent of the span the job was enqueued under (issue 13 tracing).
    trace_parent: str | None = Field(default=None, max_length=55)
    # The trace id of the call or run that enqueued it: its transitions' events' (0014).
    trace_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    finished_at: datetime | None = Field(default=None, sa_type=Timestamp)

    # The engine item waiting for this job, "{engine}/{id}" (domain/job_endings.py).
    owner: str | None = Field(default=None, max_length=200)


# SQLite aliases an INTEGER PRIMARY KEY to the rowid (autoincrementing); PostgreSQL
# gets a BIGINT identity.
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class EventRow(SQLModel, table=True):
    """One event (DESIGN §9): append-only, written in the transaction of the change it
    records; job history and, later, streams and publishers are views of it.

    `event_id` increases in insertion order (not necessarily commit order across
    concurrent transactions); the API spells it as a decimal string. `subject` is the
    resource name ("jobs/{jobId}"), `type` e.g. "job.leased", `data` compact JSON
    text of an object, `trace_id` the causing call's (NULL for the server's own
    actions). A job's history is `WHERE tenant_id = :t AND subject = :s ORDER BY
    event_id` (`ix_events_tenant_subject_id`); pruning a job deletes its events.
    """

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_tenant_subject_id", "tenant_id", "subject", "event_id"),
        # A tenant's events in id order: history pages, watch backlogs, replay ranges
        # (issue 12, `repositories/events.py`).
        sa.Index("ix_events_tenant_id", "tenant_id", "event_id"),
        # SQLite: AUTOINCREMENT, so ids deleted at the top (a clear, pruning) are never
        # reused: publisher cursors and watch positions name one event for good.
        {"sqlite_autoincrement": True},
    )

    event_id: int | None = Field(default=None, primary_key=True, sa_type=EventId)
    tenant_id: str | None = Field(default=None, max_length=64)
    type: str = Field(max_length=100)
    subject: str = Field(max_length=400)
    data: str = Field(default="{}", sa_type=sa.Text)
    trace_id: str | None = Field(default=None, max_length=64)
    time: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class EventCursorRow(SQLModel, table=True):
    """How far one outbox publisher of the events table has published (issue 12;
    `storage/event_publisher.py`): every event with `event_id <= position` is published
    (or was never committed). Written once per published batch, never per event; a
    clear keeps the events above it (`repositories/events.py`)."""

    __tablename__ = "event_cursors"

    name: str = Field(primary_key=True, max_length=200)  # e.g. "redis:orchestrator:events"
    position: int = Field(default=0, sa_type=sa.BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class QuotaRow(SQLModel, table=True):
    """The quota of one job type in one tenant (DESIGN §4.1, seed 003), with its live
    accounting. Settings: 0 turns `max_active`, `max_per_hour` and `refill_per_second`
    off; `burst` >= 1. `version` grows with every change of settings or pause state
    (never with usage) and is the AIP-154 etag's source.

    Accounting, always changed in the same transaction as the lease, completion,
    failure, cancel or expiry that uses it, with the quota row locked (`SELECT ..
    FOR UPDATE` on PostgreSQL; SQLite serialises writers):

    - Concurrency: `active` counts jobs leased now that hold a slot (jobs.quota_id =
      this quota). A lease of n jobs adds n; releasing a job's slot (complete, fail,
      lease expiry, cancel while leased) subtracts 1 and clears jobs.quota_id, in
      the same statement batch, so the count can neither leak nor drift. A new quota
      starts at 0: jobs leased before it hold no slot of it.
    - Token bucket: `tokens` as of `tokens_at`. At time t the bucket holds
      min(burst, tokens + refill_per_second * (t - tokens_at) in seconds); a lease
      of n jobs needs n whole tokens and stores that value - n with tokens_at = t.
      With refill_per_second = 0 the bucket is off (tokens stay at burst). A
      waiting job short of tokens is eligible again in (1 - tokens) /
      refill_per_second seconds.
    - Last hour: `quota_minutes` holds one row per (quota, UTC minute) with the
      leases started in it; a lease of n adds n (INSERT .. ON CONFLICT DO UPDATE
      count = count + n); lastHour is the sum over the 60 minutes ending with the
      current one (minute > now_minute - 60), at most 60 primary-key rows. Rows
      older than an hour are deleted by the pruner (or when read).
    """

    __tablename__ = "quotas"
    __table_args__ = (
        # Also the listing's index: (jobType, quotaId) within a tenant, where the job
        # type alone is unique.
        sa.UniqueConstraint("tenant_id", "job_type", name="uq_quotas_tenant_job_type"),
    )

    quota_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    job_type: str = Field(max_length=64, sa_type=SortableText)
    max_active: int = 0
    max_per_hour: int = 0
    burst: int = 1
    refill_per_second: float = 0.0
    paused: bool = False
    pause_reason: str | None = Field(default=None, max_length=256)
    active: int = 0
    tokens: float
    tokens_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_by: str = Field(default="", max_length=200)


class QuotaMinuteRow(SQLModel, table=True):
    """Leases started under one quota in one UTC minute (`minute` = epoch seconds //
    60): the sliding last-hour count of `QuotaRow` is the sum of the last 60."""

    __tablename__ = "quota_minutes"

    quota_id: str = Field(primary_key=True, max_length=64)
    minute: int = Field(primary_key=True, sa_type=sa.BigInteger)
    count: int = 0


# --- issue 10 block: pack runs (server/domain/pack_runs.py) ----------------------------

# The pack jobs the engine watches: enqueued, their job not yet taken into account.
PACK_RUN_JOB_RUNNING_PREDICATE = "status = 'running'"


class PackRunRow(SQLModel, table=True):
    """One run of a task pack (pack_run.proto). `status` (running, succeeded, failed,
    canceled) is derived from its jobs and stored in the transaction that changes
    them; `version` grows with every change, and the UPDATE that bumps it is the
    run's lock (row lock on PostgreSQL, write lock on SQLite) for whoever advances,
    cancels or retries it. `retry_of`/`retried_by` link a retry and its run.
    Listings read `ix_pack_runs_tenant_created_id` backwards (newest first)."""

    __tablename__ = "pack_runs"
    __table_args__ = (
        sa.Index("ix_pack_runs_tenant_created_id", "tenant_id", "created_at", "pack_run_id"),
    )

    pack_run_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    pack_name: str = Field(max_length=200, sa_type=SortableText)
    status: str = Field(max_length=16)
    retry_of: str | None = Field(default=None, max_length=64)
    retried_by: str | None = Field(default=None, max_length=64)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    finished_at: datetime | None = Field(default=None, sa_type=Timestamp)


class PackRunJobRow(SQLModel, table=True):
    """One job of a run, in the pack's order (`position`): its validated spec (as
    `jobs` stores one: payload compact JSON text, backoff in seconds), `depends_on`
    (JSON text of the names it waits for), its status in the run (pending, running,
    succeeded, failed, canceled, skipped) and, once enqueued, `job_id`.
    `ix_pack_run_jobs_running` (partial: running only) is what the engine joins to
    `jobs` by primary key to find the runs whose jobs ended."""

    __tablename__ = "pack_run_jobs"
    __table_args__ = (
        sa.Index(
            "ix_pack_run_jobs_running",
            "job_id",
            postgresql_where=sa.text(PACK_RUN_JOB_RUNNING_PREDICATE),
            sqlite_where=sa.text(PACK_RUN_JOB_RUNNING_PREDICATE),
        ),
    )

    pack_run_id: str = Field(primary_key=True, max_length=64)
    position: int = Field(primary_key=True)
    tenant_id: str = Field(max_length=64)
    name: str = Field(max_length=64)
    job_type: str = Field(max_length=64)
    source_id: str = Field(max_length=64)
    priority: int = 0
    payload: str | None = Field(default=None, sa_type=sa.Text)
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    backoff_multiplier: float
    backoff_jitter: float
    depends_on: str = Field(default="[]", sa_type=sa.Text)
    status: str = Field(max_length=16)
    job_id: str | None = Field(default=None, max_length=64)
    started_at: datetime | None = Field(default=None, sa_type=Timestamp)
    finished_at: datetime | None = Field(default=None, sa_type=Timestamp)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table behind a row class, for the SQLAlchemy Core hot paths."""
    return model.__table__  # type: ignore[attr-defined,no-any-return]


# --- mesh: service registry, OpenAPI snapshots, peers (issue 12) -----------------------


class RegistryServiceRow(SQLModel, table=True):
    """One service of the platform-wide registry (seed 002), unique by name.

    `revision`, `updated_at` and `origin` are the replication key (last writer wins,
    `server/domain/registry.py`): kept as they came when a peer's entry is applied.
    `metadata_json` is the service's free-form metadata as compact JSON text.
    """

    __tablename__ = "registry_services"

    name: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    base_url: str = Field(max_length=2048)
    openapi_url: str = Field(max_length=2048)
    version: str = Field(default="", max_length=64)
    metadata_json: str = Field(default="{}", sa_type=sa.Text)
    revision: int = Field(sa_type=sa.BigInteger)
    origin: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=Timestamp)
    updated_at: datetime = Field(sa_type=Timestamp)


class RegistrySnapshotRow(SQLModel, table=True):
    """One fetched OpenAPI document of a registered service: its canonical JSON, its
    digest and outline (operations and schemas with the digest of each, the input of
    drift). The newest few per service are kept (`ix_registry_snapshots_service_time`
    finds the latest and the ones to prune)."""

    __tablename__ = "registry_snapshots"
    __table_args__ = (
        sa.Index("ix_registry_snapshots_service_time", "service_name", "fetched_at", "snapshot_id"),
    )

    snapshot_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    service_name: str = Field(max_length=64)
    openapi_url: str = Field(max_length=2048)
    fetched_at: datetime = Field(sa_type=Timestamp)
    digest: str = Field(max_length=64)
    size_bytes: int = Field(sa_type=sa.BigInteger)
    outline: str = Field(sa_type=sa.Text)
    document: str = Field(sa_type=sa.Text)


class MeshPeerRow(SQLModel, table=True):
    """What the last sync learnt of one peer, keyed by its URL without credentials
    (credentials are configuration, never stored)."""

    __tablename__ = "mesh_peers"

    url: str = Field(primary_key=True, max_length=2048)
    status: str = Field(max_length=32)
    last_contact_at: datetime | None = Field(default=None, sa_type=Timestamp)
    last_attempt_at: datetime | None = Field(default=None, sa_type=Timestamp)
    last_error: str | None = Field(default=None, max_length=1024)
    registry_version: str | None = Field(default=None, max_length=64)


# Dead-letter entries (issue 10): the partial index's predicate, spelled as queries
# spell it so SQLite and PostgreSQL match them to the index.
DEADLETTER_PENDING_PREDICATE = "status = 'pending'"


class DeadLetterEntryRow(SQLModel, table=True):
    """One dead-lettered job chain (issue 10 point 1; `server/domain/deadletter.py`).

    Written in the transaction that dead-letters its job (`repositories/leases.py`:
    a final failure or a final lease expiry). `job_id` is the chain's latest
    dead-lettered job: replaying the entry enqueues a clone of it (`replay_job_id`),
    and when that clone is dead-lettered too the same entry turns `pending` again with
    `job_id` = the clone. `status` is pending, replayed (a replay is queued or
    running) or resolved (the replay succeeded). Entries outlive their jobs' pruning.

    - `ix_deadletter_entries_tenant_failed`: the listing, newest first
      (last_failed_at desc, entry_id desc), read backwards.
    - `ix_deadletter_entries_pending` (partial, status = 'pending'): replay-pending in
      (last_failed_at, entry_id) order, and the oldest pending entry of a tenant.
    - `ix_deadletter_entries_replay_job`: the entry of a replay job, found when that
      job is dead-lettered (the chain) or succeeds (resolved); not partial, so a join
      on it (the completion statement's) can use it without proving IS NOT NULL.
    """

    __tablename__ = "deadletter_entries"
    __table_args__ = (
        sa.Index("ix_deadletter_entries_tenant_failed", "tenant_id", "last_failed_at", "entry_id"),
        sa.Index(
            "ix_deadletter_entries_pending",
            "tenant_id",
            "last_failed_at",
            "entry_id",
            postgresql_where=sa.text(DEADLETTER_PENDING_PREDICATE),
            sqlite_where=sa.text(DEADLETTER_PENDING_PREDICATE),
        ),
        sa.Index("ix_deadletter_entries_replay_job", "replay_job_id"),
        sa.Index("uq_deadletter_entries_job_id", "job_id", unique=True),
    )

    entry_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    job_id: str = Field(max_length=64)
    job_type: str = Field(max_length=64)
    source_id: str = Field(max_length=64)
    category: str = Field(max_length=64)
    error_code: str = Field(max_length=128)
    message: str = Field(sa_type=sa.Text)
    fingerprint: str = Field(max_length=16)
    retryable: bool
    attempts: int
    status: str = Field(max_length=16)
    first_failed_at: datetime = Field(sa_type=Timestamp)
    last_failed_at: datetime = Field(sa_type=Timestamp)
    replay_count: int = 0
    replay_job_id: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(sa_type=Timestamp)


class DeadLetterClusterRow(SQLModel, table=True):
    """The counters of one error cluster (fingerprint) of a tenant and project: what
    dead-letter stats and summary read instead of scanning entries (issue 10 point 2).

    Changed in the transaction of every entry change, by deltas, with the rows
    written in key order (so writers never deadlock): a new entry adds 1 to `total`
    and `pending` (and `retryable` when its error was retryable); a replay takes 1
    from `pending` (and `retryable`); a chain dead-lettered again moves the entry
    from its old cluster's `total` to its new one's. `retryable` counts pending
    retryable entries. `project_key` is the entries' project id, '' for none (part of
    the primary key, so not NULL). `sample_message` is the latest message added.
    """

    __tablename__ = "deadletter_clusters"

    tenant_id: str = Field(primary_key=True, max_length=64)
    project_key: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(primary_key=True, max_length=16)
    category: str = Field(max_length=64, sa_type=SortableText)
    error_code: str = Field(max_length=128, sa_type=SortableText)
    sample_message: str = Field(sa_type=sa.Text)
    total: int = 0
    pending: int = 0
    retryable: int = 0
    last_failed_at: datetime = Field(sa_type=Timestamp)


# Orchestra (issue 11): predicates of the tokens' partial indexes, spelled as the
# queries spell them so both backends match the query to its index.
ORCHESTRA_JOB_WAIT_PREDICATE = "status = 'waiting' AND job_id IS NOT NULL"
ORCHESTRA_TIMER_PREDICATE = "status = 'waiting' AND due_at IS NOT NULL"
ORCHESTRA_SAGA_PREDICATE = "saga"
ORCHESTRA_COMPENSATING_PREDICATE = "compensation_status = 'running'"


class OrchestraDefinitionRow(SQLModel, table=True):
    """One immutable version of a process definition (DESIGN §4.3).

    `document` is the file format as compact JSON (`domain/orchestra/model.py`
    DefinitionSpec.document); `tenant_id` NULL means shared by every tenant, and all
    versions of one id share it. Never updated or deleted: instances name the
    version they run on.
    """

    __tablename__ = "orchestra_definitions"

    definition_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    version: int = Field(primary_key=True)
    tenant_id: str | None = Field(default=None, max_length=64)
    document: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    created_by: str = Field(max_length=200)


class OrchestraInstanceRow(SQLModel, table=True):
    """One process instance. `status`: running, completed, failed or canceled, and
    for sagas compensating or compensated; `variables` compact JSON text of an
    object; `incident` compact JSON of why it failed (a saga's: why it compensated).
    `saga` is set at start when the definition version declares a compensation
    (domain/orchestra/sagas.py); `ix_orchestra_instances_saga` (partial, saga rows
    only) serves the saga statistics. The cross-site list reads
    `ix_orchestra_instances_tenant_created` backwards (newest first), or
    `..._definition` with a definition filter. Each step locks the row first (FOR
    UPDATE on PostgreSQL, the write lock on SQLite), so the steps of one instance
    never interleave.
    """

    __tablename__ = "orchestra_instances"
    __table_args__ = (
        sa.Index("ix_orchestra_instances_tenant_created", "tenant_id", "created_at", "instance_id"),
        sa.Index(
            "ix_orchestra_instances_tenant_definition",
            "tenant_id",
            "definition_id",
            "created_at",
            "instance_id",
        ),
        sa.Index(
            "ix_orchestra_instances_saga",
            "tenant_id",
            "definition_id",
            "status",
            "created_at",
            "ended_at",
            postgresql_where=sa.text(ORCHESTRA_SAGA_PREDICATE),
            sqlite_where=sa.text(ORCHESTRA_SAGA_PREDICATE),
        ),
    )

    instance_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    definition_id: str = Field(max_length=64, sa_type=SortableText)
    definition_version: int
    status: str = Field(max_length=16)
    variables: str = Field(default="{}", sa_type=sa.Text)
    incident: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    ended_at: datetime | None = Field(default=None, sa_type=Timestamp)
    saga: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # The trace of the call that started it (0014): the product trace id and the W3C
    # traceparent of that call's span; the engine's own later steps run in them.
    trace_id: str | None = Field(default=None, max_length=64)
    trace_parent: str | None = Field(default=None, max_length=55)


class OrchestraTokenRow(SQLModel, table=True):
    """One live token: `parked` on a user task, or `waiting` for its job (`job_id`),
    its timer (`due_at`) or a join. A token that moves on is deleted in the step's
    transaction (its history is events), so a second signal, a second timer firing
    or a second job ending finds nothing to take: every take is a conditional
    DELETE. `ix_orchestra_tokens_job` finds tokens whose job has ended,
    `ix_orchestra_tokens_due` timers that are due (claimed with SKIP LOCKED on
    PostgreSQL by any replica).
    """

    __tablename__ = "orchestra_tokens"
    __table_args__ = (
        sa.Index("ix_orchestra_tokens_instance", "instance_id", "created_at"),
        sa.Index(
            "ix_orchestra_tokens_job",
            "job_id",
            postgresql_where=sa.text(ORCHESTRA_JOB_WAIT_PREDICATE),
            sqlite_where=sa.text(ORCHESTRA_JOB_WAIT_PREDICATE),
        ),
        sa.Index(
            "ix_orchestra_tokens_due",
            "due_at",
            postgresql_where=sa.text(ORCHESTRA_TIMER_PREDICATE),
            sqlite_where=sa.text(ORCHESTRA_TIMER_PREDICATE),
        ),
    )

    token_id: str = Field(primary_key=True, max_length=64)
    instance_id: str = Field(max_length=64)
    tenant_id: str = Field(max_length=64)
    node_id: str = Field(max_length=64)
    status: str = Field(max_length=16)
    job_id: str | None = Field(default=None, max_length=64)
    due_at: datetime | None = Field(default=None, sa_type=Timestamp)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class OrchestraSagaStepRow(SQLModel, table=True):
    """One service-task step of a saga instance and its compensation (issue 13 point 2;
    domain/orchestra/sagas.py).

    A row is inserted when the step's job is enqueued (`step_id` is the token's id,
    `position` the order the instance's steps started in, from 1) and updated as the
    job ends (`status` running -> completed | failed | canceled, `ended_at` the job's
    own finishing time, `result` its result JSON, `error` why it did not complete).
    When the saga compensates, each completed step with a `compensation` job type gets
    `compensation_order` (1 first: reverse order of completion) and
    `compensation_status` pending -> running (`compensation_job_id` enqueued) ->
    succeeded | failed | canceled, or skipped when an earlier compensation failed.
    `ix_orchestra_saga_steps_compensation` (partial: running compensations) is how
    the engine finds compensation jobs that ended; rows are claimed with a
    conditional UPDATE on `compensation_status`, so an ending counts once.
    """

    __tablename__ = "orchestra_saga_steps"
    __table_args__ = (
        sa.UniqueConstraint("instance_id", "position", name="uq_orchestra_saga_steps_position"),
        sa.Index(
            "ix_orchestra_saga_steps_compensation",
            "compensation_job_id",
            postgresql_where=sa.text(ORCHESTRA_COMPENSATING_PREDICATE),
            sqlite_where=sa.text(ORCHESTRA_COMPENSATING_PREDICATE),
        ),
    )

    step_id: str = Field(primary_key=True, max_length=64)
    instance_id: str = Field(max_length=64)
    tenant_id: str = Field(max_length=64)
    position: int
    node_id: str = Field(max_length=64)
    job_type: str = Field(max_length=64)
    job_id: str | None = Field(default=None, max_length=64)
    compensation: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16)
    result: str | None = Field(default=None, sa_type=sa.Text)
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime = Field(sa_type=Timestamp)
    ended_at: datetime | None = Field(default=None, sa_type=Timestamp)
    compensation_order: int | None = None
    compensation_status: str | None = Field(default=None, max_length=16)
    compensation_job_id: str | None = Field(default=None, max_length=64)
    compensation_started_at: datetime | None = Field(default=None, sa_type=Timestamp)
    compensation_ended_at: datetime | None = Field(default=None, sa_type=Timestamp)
    compensation_error: str | None = Field(default=None, sa_type=sa.Text)
