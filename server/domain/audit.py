"""Operator audit: every audited mutation records who, why, what and before/after.

`record` adds the entry to the session of the change itself, so the entry and the
change commit or roll back together: a failed mutation leaves no entry, and no
change exists without one. "Why" is twofold: the operator's X-Stella-Operator-*
headers of this call, and the reason/ticket the token was granted for (seed 003).

`list_audit_entries` is the tenant's trail, newest first, with the sources
contract's pagination (AIP-158): keyset over (created_at, entry_id), signed
continuation tokens bound to the tenant, the filters and the sort.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, Violation
from server.domain.pagination import TOKEN_FIELD, PageTokens, keyset_page
from server.storage.db import Database
from server.storage.repositories import audit as repo
from server.storage.tables import AuditEntryRow

_SORT = ("-createdAt", "-entryId")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The widest value each exact-match filter can equal: its column's size. A longer
# value could only match nothing, so it is a caller mistake worth naming.
_FILTER_MAX = {"action": 200, "actor": 200, "resource": 400, "traceId": 64}


class AuditEntryLike(Protocol):
    """An entry as read: a Core result row (or an ORM row) with these attributes."""

    entry_id: str
    tenant_id: str | None
    actor: str
    action: str
    resource: str
    reason: str | None
    ticket: str | None
    token_id: str | None
    quota_reason: str | None
    quota_ticket: str | None
    backfill_reason: str | None
    backfill_ticket: str | None
    trace_id: str
    before: str | None
    after: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: Sequence[AuditEntryLike]
    continuation_token: str | None


def record(
    session: AsyncSession,
    call: CallContext,
    *,
    action: str,
    resource: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> AuditEntryRow:
    """Add the entry to `session`, the transaction of the change it records."""
    entry = AuditEntryRow(
        entry_id=str(uuid.uuid4()),
        tenant_id=call.tenant_id,
        actor=call.actor,
        action=action,
        resource=resource,
        reason=call.operator_reason,
        ticket=call.operator_ticket,
        token_id=call.token_id,
        quota_reason=call.control.quota_reason,
        quota_ticket=call.control.quota_ticket,
        backfill_reason=call.control.backfill_reason,
        backfill_ticket=call.control.backfill_ticket,
        trace_id=call.trace_id,
        before=_dump(before),
        after=_dump(after),
    )
    repo.add_audit_entry(session, entry)
    return entry


def _dump(state: Mapping[str, Any] | None) -> str | None:
    if state is None:
        return None
    return json.dumps(state, sort_keys=True, default=str, separators=(",", ":"))


async def list_audit_entries(
    db: Database,
    tokens: PageTokens,
    call: CallContext,
    *,
    action: str,
    actor: str,
    resource: str,
    trace_id: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    continuation_token: str,
) -> AuditPage:
    """One page of the caller's tenant's entries; empty strings and None mean "any"."""
    tenant_id = call.require_tenant()
    texts = {"action": action, "actor": actor, "resource": resource, "traceId": trace_id}
    _validate_filters(texts, since=since, until=until)
    flt = repo.AuditFilter(
        tenant_id=tenant_id,
        action=action or None,
        actor=actor or None,
        resource=resource or None,
        trace_id=trace_id or None,
        since=since,
        until=until,
    )
    binding = {
        "list": "audit",
        "tenant": tenant_id,
        **{name: value or None for name, value in texts.items()},
        "since": _micros(since) if since is not None else None,
        "until": _micros(until) if until is not None else None,
        "sort": _SORT,
    }

    async def read(
        before: tuple[datetime, str] | None, page_limit: int
    ) -> Sequence[AuditEntryLike]:
        async with db.read() as conn:
            return await repo.list_audit_page(conn, flt=flt, before=before, limit=page_limit)

    items, token = await keyset_page(
        tokens,
        limit=limit,
        token=continuation_token,
        binding=binding,
        position=_position,
        read=read,
        key=lambda row: (_micros(row.created_at), row.entry_id),
    )
    return AuditPage(items=items, continuation_token=token)


def _validate_filters(
    texts: Mapping[str, str], *, since: datetime | None, until: datetime | None
) -> None:
    """Every bad filter at once, each named as the caller spelled it. Control characters
    are refused because no stored value has them and PostgreSQL refuses NUL outright."""
    violations: list[Violation] = []
    for name, value in texts.items():
        if len(value) > _FILTER_MAX[name]:
            violations.append(Violation(name, f"must be at most {_FILTER_MAX[name]} characters"))
        elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            violations.append(Violation(name, "must not contain control characters"))
    if since is not None and until is not None and until <= since:
        violations.append(Violation("until", "must be after since"))
    if violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(message, violations=tuple(violations))


def _micros(value: datetime) -> int:
    """A stored time as integer microseconds since the epoch: exact in a page token, where
    a float or a formatted string could drift. SQLite hands back naive UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


_MIN_MICROS = _micros(datetime(1, 1, 1, tzinfo=UTC))
_MAX_MICROS = _micros(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))


def _position(after: tuple[Any, ...]) -> tuple[datetime, str]:
    """The (created_at, entry_id) a signed token points at; a well-signed token of another
    shape (say, another listing's) does not point into this one."""
    if (
        len(after) != 2
        or type(after[0]) is not int
        or not isinstance(after[1], str)
        or not _MIN_MICROS <= after[0] <= _MAX_MICROS
    ):
        raise InvalidArgument.of(TOKEN_FIELD, "does not point into this listing")
    return _EPOCH + timedelta(microseconds=after[0]), after[1]
