"""Audit entries carry the token's justification: its jti and seed-003 reason/ticket claims.

Also makes `audit_entries.entry_id` compare byte-wise on PostgreSQL (collation "C"),
as SQLite does already: it breaks ties of the newest-first listing, and keyset pages
must come out in the same order on both backends.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CLAIM_COLUMNS = (
    ("token_id", 64),
    ("quota_reason", 256),
    ("quota_ticket", 128),
    ("backfill_reason", 256),
    ("backfill_ticket", 128),
)


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    # Nullable additions: plain ALTER TABLE ADD COLUMN on both backends, no table copy.
    with op.batch_alter_table("audit_entries") as batch:
        for name, length in _CLAIM_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
    if _is_postgresql():
        op.alter_column(
            "audit_entries",
            "entry_id",
            type_=sa.String(64, collation="C"),
            existing_type=sa.String(64),
            existing_nullable=False,
        )


def downgrade() -> None:
    if _is_postgresql():
        op.alter_column(
            "audit_entries",
            "entry_id",
            type_=sa.String(64),
            existing_type=sa.String(64, collation="C"),
            existing_nullable=False,
        )
    with op.batch_alter_table("audit_entries") as batch:
        for name, _length in reversed(_CLAIM_COLUMNS):
            batch.drop_column(name)
