"""Initial schema: tenants, sources, audit entries, server secrets.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "sources",
        sa.Column("source_id", SortableText, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("name", SortableText, nullable=False),
        sa.Column("source_type", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_sources_tenant_name"),
    )
    op.create_index("ix_sources_tenant_name_id", "sources", ["tenant_id", "name", "source_id"])
    op.create_table(
        "audit_entries",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("resource", sa.String(400), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=True),
        sa.Column("ticket", sa.String(256), nullable=True),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index(
        "ix_audit_tenant_time_id", "audit_entries", ["tenant_id", "created_at", "entry_id"]
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    op.drop_index("ix_audit_tenant_time_id", "audit_entries")
    op.drop_table("audit_entries")
    op.drop_index("ix_sources_tenant_name_id", "sources")
    op.drop_table("sources")
    op.drop_table("tenants")
