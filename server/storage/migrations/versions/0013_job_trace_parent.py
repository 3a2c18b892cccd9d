"""Jobs remember their trace (issue 13 point 4): `jobs.trace_parent`.

The W3C traceparent (`00-<trace id>-<span id>-<flags>`, 55 characters) of the
`job.enqueue` span a job was created under, so its lease, completion, failure,
expiry and dead-lettering are spans of that same trace (server/domain/tracing.py).
NULL for jobs enqueued before this revision or with tracing off.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: ALTER TABLE ADD COLUMN on both backends, no rewrite of the rows.
    op.add_column("jobs", sa.Column("trace_parent", sa.String(55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_parent")
