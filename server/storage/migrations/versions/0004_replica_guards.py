"""State every replica shares per request: seen DPoP proofs and failed client authentications.

The DPoP jti replay cache (RFC 9449 §11.1) and the failed-secret throttle were per
process, so N replicas accepted a replayed proof N times and granted N times the
guesses. Both are short-lived rows keyed so that the primary key decides atomically;
times are epoch milliseconds (the unit of Redis PX, the other backend).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dpop_proofs",
        sa.Column("proof_key", sa.String(64), primary_key=True),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_dpop_proofs_expires_at_ms", "dpop_proofs", ["expires_at_ms"])
    op.create_table(
        "auth_failures",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_auth_failures_expires_at_ms", "auth_failures", ["expires_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_auth_failures_expires_at_ms", "auth_failures")
    op.drop_table("auth_failures")
    op.drop_index("ix_dpop_proofs_expires_at_ms", "dpop_proofs")
    op.drop_table("dpop_proofs")
