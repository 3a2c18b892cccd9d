"""Runs and jobs remember their trace id (issue 13 point 4, critic 4 and 11).

- `jobs.trace_id`: the product trace id (X-Stella-Trace-Id, a traceparent's, or a
  new W3C id; at most 64 characters) of the call or process run a job was enqueued
  under. The transitions a worker or the lease reaper causes (job.leased,
  job.throttled, job.succeeded, job.failed, job.dead_lettered, job.lease_expired)
  carry it as their event's trace id, so a job's history is one trace.
- `orchestra_instances.trace_id` / `.trace_parent`: the trace id of the call that
  started the instance and the W3C traceparent (55 characters) of that call's span;
  the engine's own later steps (job endings, timers, compensations) run in them.

NULL for rows written before this revision (their events fall back to the causing
call's trace id, as before); `trace_parent` also NULL with tracing off.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: ALTER TABLE ADD COLUMN on both backends, no rewrite of the rows.
    op.add_column("jobs", sa.Column("trace_id", sa.String(64), nullable=True))
    op.add_column("orchestra_instances", sa.Column("trace_id", sa.String(64), nullable=True))
    op.add_column("orchestra_instances", sa.Column("trace_parent", sa.String(55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orchestra_instances") as batch:
        batch.drop_column("trace_parent")
        batch.drop_column("trace_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_id")
