"""Events publication: outbox cursor for the Redis stream and replay (issue 12).

- `event_cursors`: how far each outbox publisher has published (EventCursorRow).
- `ix_events_tenant_id` (tenant_id, event_id): a tenant's events in id order, for
  `/infrastructure/events/history`, watch backlogs and replay ranges.
- SQLite: `events` is rebuilt with AUTOINCREMENT (rows copied, ids kept), so ids
  deleted at the top by a clear or pruning are never handed out again; a
  publisher cursor or a watch's Last-Event-ID names one event for good. PostgreSQL's
  identity never reuses values already.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
_COLUMNS = "event_id, tenant_id, type, subject, data, trace_id, time"


def _events_table(name: str, *, autoincrement: bool) -> None:
    op.create_table(
        name,
        sa.Column("event_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("time", Timestamp, nullable=False),
        sqlite_autoincrement=autoincrement,
    )


def _rebuild_sqlite_events(*, autoincrement: bool) -> None:
    op.drop_index("ix_events_tenant_subject_id", "events")
    _events_table("events_rebuilt", autoincrement=autoincrement)
    op.execute(f"INSERT INTO events_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM events")
    op.drop_table("events")
    op.rename_table("events_rebuilt", "events")
    op.create_index("ix_events_tenant_subject_id", "events", ["tenant_id", "subject", "event_id"])


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_events(autoincrement=True)
    op.create_index("ix_events_tenant_id", "events", ["tenant_id", "event_id"])
    op.create_table(
        "event_cursors",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_cursors")
    op.drop_index("ix_events_tenant_id", "events")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_events(autoincrement=False)
