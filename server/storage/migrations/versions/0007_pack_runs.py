"""Pack runs and job-ending notifications (issue 10).

`jobs.owner` names another engine's item waiting for the job ("{engine}/{id}");
`ix_jobs_pack_run` and `ix_jobs_owner` are partial (only owned jobs have entries),
so ordinary jobs pay nothing for them (`server/domain/job_endings.py`).

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


def upgrade() -> None:
    op.add_column("jobs", sa.Column("owner", sa.String(200), nullable=True))
    _partial_index("ix_jobs_pack_run", "pack_run_id")
    _partial_index("ix_jobs_owner", "owner")


def downgrade() -> None:
    op.drop_index("ix_jobs_owner", table_name="jobs")
    op.drop_index("ix_jobs_pack_run", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
