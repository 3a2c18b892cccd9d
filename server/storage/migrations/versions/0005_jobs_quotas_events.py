"""JobEngine I: jobs, quotas with their accounting, and the append-only events table.

The shapes, indexes and the quota accounting model are documented on the row
classes (`server/storage/tables.py`: JobRow, EventRow, QuotaRow, QuotaMinuteRow).
Partial indexes (the lease's ready set, leased jobs by expiry, finished jobs by
finish time, idempotency keys) exist on PostgreSQL and SQLite alike.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
READY = "status IN ('queued', 'throttled', 'failed')"


def _partial_index(
    name: str, columns: list[str | sa.TextClause], predicate: str, *, unique: bool = False
) -> None:
    """An index of `jobs` over the rows where `predicate` holds, on both backends."""
    op.create_index(
        name,
        "jobs",
        columns,
        unique=unique,
        postgresql_where=sa.text(predicate),
        sqlite_where=sa.text(predicate),
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", SortableText, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("job_type", SortableText, nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff_initial_s", sa.Float(), nullable=False),
        sa.Column("backoff_max_s", sa.Float(), nullable=False),
        sa.Column("backoff_multiplier", sa.Float(), nullable=False),
        sa.Column("backoff_jitter", sa.Float(), nullable=False),
        sa.Column("run_at", Timestamp, nullable=False),
        sa.Column("next_eligible_at", Timestamp, nullable=True),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", Timestamp, nullable=True),
        sa.Column("quota_id", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("replay_of", sa.String(64), nullable=True),
        sa.Column("pack_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
    )
    _partial_index(
        "ix_jobs_ready",
        ["tenant_id", "job_type", sa.text("priority DESC"), "next_eligible_at", "job_id"],
        READY,
    )
    _partial_index(
        "uq_jobs_tenant_idempotency_key",
        ["tenant_id", "idempotency_key"],
        "idempotency_key IS NOT NULL",
        unique=True,
    )
    op.create_index("ix_jobs_tenant_created_id", "jobs", ["tenant_id", "created_at", "job_id"])
    _partial_index("ix_jobs_lease_expiry", ["lease_expires_at"], "status = 'leased'")
    _partial_index("ix_jobs_finished", ["finished_at"], "finished_at IS NOT NULL")
    op.create_table(
        "events",
        sa.Column("event_id", EventId, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("time", Timestamp, nullable=False),
    )
    op.create_index("ix_events_tenant_subject_id", "events", ["tenant_id", "subject", "event_id"])
    op.create_table(
        "quotas",
        sa.Column("quota_id", SortableText, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("job_type", SortableText, nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=False),
        sa.Column("max_per_hour", sa.Integer(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("refill_per_second", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.String(256), nullable=True),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("tokens_at", Timestamp, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("tenant_id", "job_type", name="uq_quotas_tenant_job_type"),
    )
    op.create_table(
        "quota_minutes",
        sa.Column("quota_id", sa.String(64), primary_key=True),
        sa.Column("minute", sa.BigInteger(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_minutes")
    op.drop_table("quotas")
    op.drop_index("ix_events_tenant_subject_id", "events")
    op.drop_table("events")
    for index in (
        "ix_jobs_finished",
        "ix_jobs_lease_expiry",
        "ix_jobs_tenant_created_id",
        "uq_jobs_tenant_idempotency_key",
        "ix_jobs_ready",
    ):
        op.drop_index(index, "jobs")
    op.drop_table("jobs")
