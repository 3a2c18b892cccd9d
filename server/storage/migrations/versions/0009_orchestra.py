"""Orchestra process engine: definitions, instances, tokens, variables, timers (issue 11).

The shapes and indexes are documented on the row classes (`server/storage/tables.py`:
OrchestraDefinitionRow, OrchestraInstanceRow, OrchestraTokenRow). Timers are the
tokens' `due_at`; the tokens' partial indexes exist on PostgreSQL and SQLite alike.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)
JOB_WAIT = "status = 'waiting' AND job_id IS NOT NULL"
TIMER = "status = 'waiting' AND due_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "orchestra_definitions",
        sa.Column("definition_id", SortableText, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("definition_id", "version"),
    )
    op.create_table(
        "orchestra_instances",
        sa.Column("instance_id", SortableText, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("definition_id", SortableText, nullable=False),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("incident", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("ended_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("instance_id"),
    )
    op.create_index(
        "ix_orchestra_instances_tenant_created",
        "orchestra_instances",
        ["tenant_id", "created_at", "instance_id"],
    )
    op.create_index(
        "ix_orchestra_instances_tenant_definition",
        "orchestra_instances",
        ["tenant_id", "definition_id", "created_at", "instance_id"],
    )
    op.create_table(
        "orchestra_tokens",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("due_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    op.create_index(
        "ix_orchestra_tokens_instance", "orchestra_tokens", ["instance_id", "created_at"]
    )
    for name, column, predicate in (
        ("ix_orchestra_tokens_job", "job_id", JOB_WAIT),
        ("ix_orchestra_tokens_due", "due_at", TIMER),
    ):
        op.create_index(
            name,
            "orchestra_tokens",
            [column],
            postgresql_where=sa.text(predicate),
            sqlite_where=sa.text(predicate),
        )


def downgrade() -> None:
    op.drop_table("orchestra_tokens")
    op.drop_table("orchestra_instances")
    op.drop_table("orchestra_definitions")
