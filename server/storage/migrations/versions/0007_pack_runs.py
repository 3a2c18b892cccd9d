"""Pack runs and job-ending notifications (issue 10).

`jobs.owner` names another engine's item waiting for the job ("{engine}/{id}");
`ix_jobs_pack_run` and `ix_jobs_owner` are partial (only owned jobs have entries),
so ordinary jobs pay nothing for them (`server/domain/job_endings.py`).
`pack_runs` and `pack_run_jobs` hold the runs of task packs and their jobs (shapes
and indexes documented on PackRunRow and PackRunJobRow in `server/storage/tables.py`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _partial_index(name: str, column: str) -> None:
    predicate = sa.text(f"{column} IS NOT NULL")
    op.create_index(name, "jobs", [column], postgresql_where=predicate, sqlite_where=predicate)


SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)
RUNNING = "status = 'running'"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("owner", sa.String(200), nullable=True))
    _partial_index("ix_jobs_pack_run", "pack_run_id")
    _partial_index("ix_jobs_owner", "owner")
    op.create_table(
        "pack_runs",
        sa.Column("pack_run_id", SortableText, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("pack_name", SortableText, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retry_of", sa.String(64), nullable=True),
        sa.Column("retried_by", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
    )
    op.create_index(
        "ix_pack_runs_tenant_created_id", "pack_runs", ["tenant_id", "created_at", "pack_run_id"]
    )
    op.create_table(
        "pack_run_jobs",
        sa.Column("pack_run_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("job_type", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff_initial_s", sa.Float(), nullable=False),
        sa.Column("backoff_max_s", sa.Float(), nullable=False),
        sa.Column("backoff_multiplier", sa.Float(), nullable=False),
        sa.Column("backoff_jitter", sa.Float(), nullable=False),
        sa.Column("depends_on", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
    )
    op.create_index(
        "ix_pack_run_jobs_running",
        "pack_run_jobs",
        ["job_id"],
        postgresql_where=sa.text(RUNNING),
        sqlite_where=sa.text(RUNNING),
    )


def downgrade() -> None:
    op.drop_index("ix_pack_run_jobs_running", table_name="pack_run_jobs")
    op.drop_table("pack_run_jobs")
    op.drop_index("ix_pack_runs_tenant_created_id", table_name="pack_runs")
    op.drop_table("pack_runs")
    op.drop_index("ix_jobs_owner", table_name="jobs")
    op.drop_index("ix_jobs_pack_run", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
