"""Mesh service registry, OpenAPI snapshots and peers (issue 12).

The shapes are documented on the row classes (`server/storage/tables.py`:
RegistryServiceRow, RegistrySnapshotRow, MeshPeerRow).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_services",
        sa.Column("name", SortableText, primary_key=True),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("openapi_url", sa.String(2048), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "registry_snapshots",
        sa.Column("snapshot_id", SortableText, primary_key=True),
        sa.Column("service_name", sa.String(64), nullable=False),
        sa.Column("openapi_url", sa.String(2048), nullable=False),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("outline", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_registry_snapshots_service_time",
        "registry_snapshots",
        ["service_name", "fetched_at", "snapshot_id"],
    )
    op.create_table(
        "mesh_peers",
        sa.Column("url", sa.String(2048), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("last_contact_at", Timestamp, nullable=True),
        sa.Column("last_attempt_at", Timestamp, nullable=True),
        sa.Column("last_error", sa.String(1024), nullable=True),
        sa.Column("registry_version", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("mesh_peers")
    op.drop_index("ix_registry_snapshots_service_time", table_name="registry_snapshots")
    op.drop_table("registry_snapshots")
    op.drop_table("registry_services")
