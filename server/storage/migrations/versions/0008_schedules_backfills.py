"""Schedules and backfills (issue 10): the schedules of scheduler sources, backfills
with the jobs covering their windows, and the jobs' event time.

The shapes and indexes are documented on the row classes (`server/storage/tables.py`:
ScheduleRow, BackfillRow, BackfillJobRow, JobRow.event_time).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMN on both backends (no SQLite table rebuild of the hot table).
    op.add_column("jobs", sa.Column("event_time", Timestamp, nullable=True))
    op.create_table(
        "schedules",
        sa.Column("source_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("misfire_policy", sa.String(16), nullable=False),
        sa.Column("job_type", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff_initial_s", sa.Float(), nullable=False),
        sa.Column("backoff_max_s", sa.Float(), nullable=False),
        sa.Column("backoff_multiplier", sa.Float(), nullable=False),
        sa.Column("backoff_jitter", sa.Float(), nullable=False),
        sa.Column("next_run_at", Timestamp, nullable=False),
        sa.Column("last_run_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["next_run_at"])
    op.create_table(
        "backfills",
        sa.Column("backfill_id", SortableText, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("job_type", sa.String(64), nullable=False),
        sa.Column("window_start", Timestamp, nullable=False),
        sa.Column("window_end", Timestamp, nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("ticket", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("slice_s", sa.Float(), nullable=True),
        sa.Column("jobs_created", sa.Integer(), nullable=False),
        sa.Column("jobs_existing", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index(
        "ix_backfills_tenant_created_id", "backfills", ["tenant_id", "created_at", "backfill_id"]
    )
    op.create_index("ix_backfills_scope", "backfills", ["tenant_id", "scope", "window_start"])
    op.create_table(
        "backfill_jobs",
        sa.Column("backfill_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("created", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("backfill_jobs")
    op.drop_index("ix_backfills_scope", table_name="backfills")
    op.drop_index("ix_backfills_tenant_created_id", table_name="backfills")
    op.drop_table("backfills")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("event_time")
