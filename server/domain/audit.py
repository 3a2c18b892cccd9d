"""Operator audit: every audited mutation records who, why, what and before/after.

`record` adds the entry to the session of the change itself, so the entry and the
change commit or roll back together.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.context import CallContext
from server.storage.repositories.audit import add_audit_entry
from server.storage.tables import AuditEntryRow


def record(
    session: AsyncSession,
    call: CallContext,
    *,
    action: str,
    resource: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> AuditEntryRow:
    entry = AuditEntryRow(
        entry_id=str(uuid.uuid4()),
        tenant_id=call.tenant_id,
        actor=call.actor,
        action=action,
        resource=resource,
        reason=call.operator_reason,
        ticket=call.operator_ticket,
        trace_id=call.trace_id,
        before=_dump(before),
        after=_dump(after),
    )
    add_audit_entry(session, entry)
    return entry


def _dump(state: Mapping[str, Any] | None) -> str | None:
    if state is None:
        return None
    return json.dumps(state, sort_keys=True, default=str, separators=(",", ":"))
