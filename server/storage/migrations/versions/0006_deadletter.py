"""Dead-letter entries and their cluster counters (issue 10 points 1-2).

Shapes and indexes are documented on the row classes (`server/storage/tables.py`:
DeadLetterEntryRow, DeadLetterClusterRow). The partial index of pending entries
exists on PostgreSQL and SQLite alike.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)
PENDING = "status = 'pending'"


def upgrade() -> None:
    op.create_table(
        "deadletter_entries",
        sa.Column("entry_id", SortableText, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("job_type", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("error_code", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_failed_at", Timestamp, nullable=False),
        sa.Column("last_failed_at", Timestamp, nullable=False),
        sa.Column("replay_count", sa.Integer(), nullable=False),
        sa.Column("replay_job_id", sa.String(64), nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index(
        "ix_deadletter_entries_tenant_failed",
        "deadletter_entries",
        ["tenant_id", "last_failed_at", "entry_id"],
    )
    op.create_index(
        "ix_deadletter_entries_pending",
        "deadletter_entries",
        ["tenant_id", "last_failed_at", "entry_id"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    op.create_index("ix_deadletter_entries_replay_job", "deadletter_entries", ["replay_job_id"])
    op.create_index("uq_deadletter_entries_job_id", "deadletter_entries", ["job_id"], unique=True)
    op.create_table(
        "deadletter_clusters",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("project_key", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(16), primary_key=True),
        sa.Column("category", SortableText, nullable=False),
        sa.Column("error_code", SortableText, nullable=False),
        sa.Column("sample_message", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("retryable", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deadletter_clusters")
    op.drop_index("uq_deadletter_entries_job_id", table_name="deadletter_entries")
    op.drop_index("ix_deadletter_entries_replay_job", table_name="deadletter_entries")
    op.drop_index("ix_deadletter_entries_pending", table_name="deadletter_entries")
    op.drop_index("ix_deadletter_entries_tenant_failed", table_name="deadletter_entries")
    op.drop_table("deadletter_entries")
