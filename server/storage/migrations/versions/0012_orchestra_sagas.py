"""Orchestra sagas: the `saga` flag on instances and their steps with compensations
(issue 13 point 2).

- `orchestra_instances.saga` (false for every existing instance: they started before
  compensations ran, and keep the behaviour they started with) and the partial
  index `ix_orchestra_instances_saga` (saga rows only) for the saga statistics;
- `orchestra_saga_steps`: one row per service-task step of a saga and its
  compensation (`server/storage/tables.py` OrchestraSagaStepRow), with the partial
  index of running compensations.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
SAGA = "saga"
COMPENSATING = "compensation_status = 'running'"


def upgrade() -> None:
    with op.batch_alter_table("orchestra_instances") as batch:
        batch.add_column(sa.Column("saga", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "ix_orchestra_instances_saga",
        "orchestra_instances",
        ["tenant_id", "definition_id", "status", "created_at", "ended_at"],
        postgresql_where=sa.text(SAGA),
        sqlite_where=sa.text(SAGA),
    )
    op.create_table(
        "orchestra_saga_steps",
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("job_type", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("compensation", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("ended_at", Timestamp, nullable=True),
        sa.Column("compensation_order", sa.Integer(), nullable=True),
        sa.Column("compensation_status", sa.String(length=16), nullable=True),
        sa.Column("compensation_job_id", sa.String(length=64), nullable=True),
        sa.Column("compensation_started_at", Timestamp, nullable=True),
        sa.Column("compensation_ended_at", Timestamp, nullable=True),
        sa.Column("compensation_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("step_id"),
        sa.UniqueConstraint("instance_id", "position", name="uq_orchestra_saga_steps_position"),
    )
    op.create_index(
        "ix_orchestra_saga_steps_compensation",
        "orchestra_saga_steps",
        ["compensation_job_id"],
        postgresql_where=sa.text(COMPENSATING),
        sqlite_where=sa.text(COMPENSATING),
    )


def downgrade() -> None:
    op.drop_table("orchestra_saga_steps")
    op.drop_index("ix_orchestra_instances_saga", "orchestra_instances")
    with op.batch_alter_table("orchestra_instances") as batch:
        batch.drop_column("saga")
