"""Job sources: registration rules, lookups and the tenant-scoped listing.

Sources are unique by name within a tenant. A project (X-Stella-Project) tags what
is created and narrows what is read; a source outside the caller's project is as
absent as another tenant's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.text import has_control
from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, NotFound, Violation, shown
from server.domain.pagination import TEXT, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import ResourceType

if TYPE_CHECKING:
    from server.domain.jobs import JobLimits
    from server.domain.schedules import Schedule, ScheduleRequest
    from server.domain.units import Store

NAME_MAX = 200
# ECMA-262 compatible: the OpenAPI documents carry this very pattern (server/http_surface.py).
SOURCE_TYPE_PATTERN = r"^[a-z][a-z0-9._-]{0,63}$"
_SOURCE_TYPE = re.compile(SOURCE_TYPE_PATTERN)
_SOURCE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class SourceLike(Protocol):
    """A source as read: a storage row or a `Source`, both with these attributes."""

    @property
    def source_id(self) -> str: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def source_type(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def paused(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Source:
    """A source as the domain writes it."""

    source_id: str
    tenant_id: str
    project_id: str | None
    name: str
    source_type: str
    enabled: bool
    paused: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SourceQuery:
    """A listing's narrowing; None means "any"."""

    tenant_id: str
    project_id: str | None = None
    source_type: str | None = None
    enabled: bool | None = None


class SourceRepository(Protocol):
    """Sources inside a unit of work."""

    async def add(self, source: Source) -> None:
        """Insert `source`; AlreadyExists (SOURCE_EXISTS) when its tenant has the name."""
        ...

    async def get(self, tenant_id: str, source_id: str, *, project_id: str | None) -> Source:
        """The source to change; NotFound (SOURCE_NOT_FOUND) when absent, another
        tenant's or (with a project) outside the project."""
        ...

    async def find_by_name(self, tenant_id: str, name: str) -> Source | None:
        """The tenant's source named `name` (any project), or None."""
        ...

    async def update(self, source: Source) -> None:
        """Store the new state of a source read with `get` in this unit of work."""
        ...


class SourceReads(Protocol):
    """Sources outside a transaction: one round trip each."""

    async def get(self, tenant_id: str, source_id: str, *, project_id: str | None) -> SourceLike:
        """As `SourceRepository.get`, for reading."""
        ...

    async def page(
        self, query: SourceQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[SourceLike]:
        """Up to `limit + 1` sources of `query` after the position `after` (name,
        source_id) in `SOURCE_LISTING`'s order."""
        ...


def snapshot(source: SourceLike) -> Mapping[str, Any]:
    """The audited view of a source (before/after)."""
    return {
        "sourceId": source.source_id,
        "name": source.name,
        "sourceType": source.source_type,
        "enabled": source.enabled,
        "paused": source.paused,
        "projectId": source.project_id,
    }


SOURCE: ResourceType[SourceLike] = ResourceType(
    singular="source",
    collection="sources",
    id_field="sourceId",
    id_of=lambda source: source.source_id,
    snapshot=snapshot,
)

SOURCE_LISTING: ListingSpec[SourceLike, SourceQuery] = ListingSpec(
    name="sources",
    sort=(SortKey("name", "name", TEXT), SortKey("sourceId", "source_id", TEXT)),
    filters={"project": "project_id", "sourceType": "source_type", "enabled": "enabled"},
)

SourcePage = Page[SourceLike]


@dataclass(frozen=True, slots=True)
class ScheduledSource:
    """A scheduler source with its schedule, as registered (issue 10)."""

    source: Source
    schedule: Schedule


def _scheduled_snapshot(registered: ScheduledSource) -> Mapping[str, Any]:
    from server.domain.schedules import snapshot as schedule_snapshot

    return {**snapshot(registered.source), "schedule": schedule_snapshot(registered.schedule)}


# The audited view of a scheduler source's registration: the source and its schedule.
SCHEDULED_SOURCE: ResourceType[ScheduledSource] = ResourceType(
    singular="source",
    collection="sources",
    id_field="sourceId",
    id_of=lambda registered: registered.source.source_id,
    snapshot=_scheduled_snapshot,
)


def validate_source_type(value: str, *, field: str = "sourceType") -> Violation | None:
    if not _SOURCE_TYPE.fullmatch(value):
        return Violation(
            field,
            "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or '-'"
            f", got {shown(value)}",
        )
    return None


def _registration_violations(name: str, source_type: str) -> list[Violation]:
    violations: list[Violation] = []
    stripped = name.strip()
    if not stripped:
        violations.append(Violation("name", "is required"))
    elif len(name) > NAME_MAX:
        violations.append(Violation("name", f"must be at most {NAME_MAX} characters"))
    elif stripped != name or has_control(name):
        violations.append(
            Violation("name", "must not have surrounding blanks or control characters")
        )
    if not source_type:
        violations.append(Violation("sourceType", "is required"))
    elif (bad := validate_source_type(source_type)) is not None:
        violations.append(bad)
    return violations


def _validate_registration(name: str, source_type: str) -> None:
    """Raises InvalidArgument naming every bad field of a registration's name and type."""
    violations = _registration_violations(name, source_type)
    if violations:
        raise InvalidArgument.from_violations(violations)


async def register_source(
    store: Store,
    call: CallContext,
    *,
    name: str,
    source_type: str,
    enabled: bool,
    schedule: ScheduleRequest | None = None,
    limits: JobLimits | None = None,
) -> tuple[Source, Schedule | None]:
    """Register a source; a `scheduler` source may have a schedule (issue 10), first due
    at the tick after now (without one it enqueues nothing by itself). Raises
    InvalidArgument (every bad field, the schedule's as `schedule.<field>`),
    AlreadyExists (SOURCE_EXISTS)."""
    # Imported here: schedules builds on jobs, which builds on this module.
    from server.domain.jobs import JobLimits
    from server.domain.schedules import SCHEDULER_SOURCE_TYPE, validate_schedule

    now = datetime.now(UTC)
    source_id = str(uuid.uuid4())
    violations = _registration_violations(name, source_type)
    scheduled: Schedule | None = None
    if schedule is not None and source_type != SCHEDULER_SOURCE_TYPE:
        violations.append(Violation("schedule", f"is only for a {SCHEDULER_SOURCE_TYPE!r} source"))
    elif schedule is not None:
        try:
            scheduled, _ = validate_schedule(
                schedule, limits or JobLimits(), source_id=source_id, now=now
            )
        except InvalidArgument as error:
            violations += error.violations
    if violations:
        raise InvalidArgument.from_violations(violations)
    tenant_id = call.require_tenant()
    source = Source(
        source_id=source_id,
        tenant_id=tenant_id,
        project_id=call.project_id,
        name=name,
        source_type=source_type,
        enabled=enabled,
        paused=False,
        created_at=now,
        updated_at=now,
    )
    async with store.transaction() as uow:
        await uow.sources.add(source)
        if scheduled is None:
            await audit.record(uow, call, SOURCE, before=None, after=source)
        else:
            scheduled = replace(scheduled, tenant_id=tenant_id, project_id=call.project_id)
            await uow.schedules.add(scheduled)
            registered = ScheduledSource(source=source, schedule=scheduled)
            await audit.record(uow, call, SCHEDULED_SOURCE, before=None, after=registered)
    return source, scheduled


async def get_source(store: Store, call: CallContext, *, source_id: str) -> SourceLike:
    """Raises NotFound (SOURCE_NOT_FOUND)."""
    tenant_id = call.require_tenant()
    _check_id(source_id)
    return await store.sources.get(tenant_id, source_id, project_id=call.project_id)


async def set_paused(store: Store, call: CallContext, *, source_id: str, paused: bool) -> Source:
    """Pause or resume (idempotent: an unchanged source is audited, not rewritten).
    Raises NotFound (SOURCE_NOT_FOUND)."""
    tenant_id = call.require_tenant()
    _check_id(source_id)
    async with store.transaction() as uow:
        before = await uow.sources.get(tenant_id, source_id, project_id=call.project_id)
        after = before
        if before.paused != paused:
            after = replace(before, paused=paused, updated_at=datetime.now(UTC))
            await uow.sources.update(after)
        await audit.record(uow, call, SOURCE, before=before, after=after)
    return after


async def list_sources(
    store: Store,
    tokens: PageTokens,
    call: CallContext,
    *,
    source_type: str,
    enabled: bool | None,
    limit: int,
    continuation_token: str,
) -> SourcePage:
    """Raises InvalidArgument for a bad `sourceType`, `limit` or `continuationToken`."""
    tenant_id = call.require_tenant()
    if source_type and (bad := validate_source_type(source_type)) is not None:
        raise InvalidArgument.from_violations((bad,))
    query = SourceQuery(
        tenant_id=tenant_id,
        project_id=call.project_id,
        source_type=source_type or None,
        enabled=enabled,
    )
    return await SOURCE_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.sources.page
    )


def _check_id(source_id: str) -> None:
    """No source has an id outside the issued alphabet; saying so early also keeps bytes
    a database refuses (NUL for PostgreSQL) away from it."""
    if not _SOURCE_ID.match(source_id):
        raise NotFound.of(SOURCE, source_id)
