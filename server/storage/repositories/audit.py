"""Audit entries: append-only, written inside the caller's transaction."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from server.storage.tables import AuditEntryRow


def add_audit_entry(session: AsyncSession, entry: AuditEntryRow) -> None:
    session.add(entry)
