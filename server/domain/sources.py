"""Job sources: registration rules, lookups and the tenant-scoped listing.

Sources are unique by name within a tenant. A project (X-Stella-Project) tags what
is created and narrows what is read; a source outside the caller's project is as
absent as another tenant's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import AlreadyExists, InvalidArgument, NotFound, Violation
from server.domain.pagination import PageTokens, keyset_page
from server.storage.db import Database
from server.storage.repositories import sources as repo
from server.storage.tables import SourceRow, utcnow

NAME_MAX = 200
_SOURCE_TYPE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_SORT = ("name", "sourceId")
_SOURCE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class SourceLike(Protocol):
    """A source as read: an ORM row or a Core result row, both with these attributes."""

    source_id: str
    name: str
    source_type: str
    enabled: bool
    paused: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SourcePage:
    items: Sequence[SourceLike]
    continuation_token: str | None


def validate_source_type(value: str, *, field: str = "sourceType") -> Violation | None:
    if not _SOURCE_TYPE.match(value):
        return Violation(
            field,
            "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or '-'"
            f", got {value!r}",
        )
    return None


def _validate_registration(name: str, source_type: str) -> None:
    violations: list[Violation] = []
    stripped = name.strip()
    if not stripped:
        violations.append(Violation("name", "is required"))
    elif len(name) > NAME_MAX:
        violations.append(Violation("name", f"must be at most {NAME_MAX} characters"))
    elif stripped != name or any(ord(ch) < 0x20 for ch in name):
        violations.append(
            Violation("name", "must not have surrounding blanks or control characters")
        )
    if not source_type:
        violations.append(Violation("sourceType", "is required"))
    elif (bad := validate_source_type(source_type)) is not None:
        violations.append(bad)
    if violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(message, violations=tuple(violations))


def snapshot(row: SourceRow) -> dict[str, Any]:
    """The audited view of a source (before/after)."""
    return {
        "sourceId": row.source_id,
        "name": row.name,
        "sourceType": row.source_type,
        "enabled": row.enabled,
        "paused": row.paused,
        "projectId": row.project_id,
    }


async def register_source(
    db: Database, call: CallContext, *, name: str, source_type: str, enabled: bool
) -> SourceRow:
    _validate_registration(name, source_type)
    tenant_id = call.require_tenant()
    async with db.transaction() as session:
        if await repo.find_source_by_name(session, tenant_id=tenant_id, name=name) is not None:
            raise _duplicate(name)
        now = utcnow()
        row = SourceRow(
            source_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            project_id=call.project_id,
            name=name,
            source_type=source_type,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        audit.record(
            session,
            call,
            action="sources.register",
            resource=f"sources/{row.source_id}",
            before=None,
            after=snapshot(row),
        )
        try:
            await session.flush()
        except sa.exc.IntegrityError as exc:  # a concurrent registration won the race
            raise _duplicate(name) from exc
    return row


async def get_source(db: Database, call: CallContext, *, source_id: str) -> SourceLike:
    tenant_id = call.require_tenant()
    _check_id(source_id)
    async with db.read() as conn:
        row = await repo.read_source(
            conn, tenant_id=tenant_id, source_id=source_id, project_id=call.project_id
        )
    if row is None:
        raise _not_found(source_id)
    return row  # a Core row has the attributes of SourceLike


async def set_paused(db: Database, call: CallContext, *, source_id: str, paused: bool) -> SourceRow:
    tenant_id = call.require_tenant()
    _check_id(source_id)
    async with db.transaction() as session:
        row = await repo.get_source(
            session, tenant_id=tenant_id, source_id=source_id, project_id=call.project_id
        )
        if row is None:
            raise _not_found(source_id)
        before = snapshot(row)
        if row.paused != paused:
            row.paused = paused
            row.updated_at = utcnow()
            session.add(row)
        audit.record(
            session,
            call,
            action="sources.pause" if paused else "sources.resume",
            resource=f"sources/{row.source_id}",
            before=before,
            after=snapshot(row),
        )
    return row


async def list_sources(
    db: Database,
    tokens: PageTokens,
    call: CallContext,
    *,
    source_type: str,
    enabled: bool | None,
    limit: int,
    continuation_token: str,
) -> SourcePage:
    tenant_id = call.require_tenant()
    if source_type and (bad := validate_source_type(source_type)) is not None:
        raise InvalidArgument(f"{bad.field}: {bad.description}", violations=(bad,))
    flt = repo.SourceFilter(
        tenant_id=tenant_id,
        project_id=call.project_id,
        source_type=source_type or None,
        enabled=enabled,
    )
    binding = {
        "list": "sources",
        "tenant": tenant_id,
        "project": call.project_id,
        "sourceType": flt.source_type,
        "enabled": enabled,
        "sort": _SORT,
    }

    async def read(after: tuple[str, str] | None, page_limit: int) -> Sequence[SourceLike]:
        async with db.read() as conn:
            return await repo.list_sources_page(conn, flt=flt, after=after, limit=page_limit)

    items, token = await keyset_page(
        tokens,
        limit=limit,
        token=continuation_token,
        binding=binding,
        position=_source_key,
        read=read,
        key=lambda row: (row.name, row.source_id),
    )
    return SourcePage(items=items, continuation_token=token)


def _source_key(after: tuple[Any, ...]) -> tuple[str, str]:
    if len(after) != 2 or not all(isinstance(part, str) for part in after):
        raise InvalidArgument.of("continuationToken", "does not point into this listing")
    return (after[0], after[1])


def _check_id(source_id: str) -> None:
    """No source has an id outside the issued alphabet; saying so early also keeps bytes
    a database refuses (NUL for PostgreSQL) away from it."""
    if not _SOURCE_ID.match(source_id):
        raise _not_found(source_id)


def _duplicate(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a source named {name!r} already exists in this tenant",
        reason="SOURCE_EXISTS",
        metadata={"name": name},
    )


def _not_found(source_id: str) -> NotFound:
    return NotFound(
        f"source {source_id!r} not found",
        reason="SOURCE_NOT_FOUND",
        metadata={"sourceId": source_id},
    )
