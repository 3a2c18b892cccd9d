"""Operator audit: every audited mutation records who, why, what and before/after.

`record` appends the entry in the unit of work of the change itself, so the entry
and the change commit or roll back together: a failed mutation leaves no entry, and
no change exists without one. What is recorded comes from the call and the
resource, never from strings typed per call site: the action is the called method
read against the resource type (`action_name`), the resource name and the
before/after snapshots are the resource type's. "Why" is twofold: the operator's
X-Stella-Operator-* headers of this call, and the reason/ticket the token was
granted for (seed 003).

`list_audit_entries` is the tenant's trail, newest first, with the sources
contract's pagination (AIP-158): keyset over (created_at, entry_id), signed
continuation tokens bound to the tenant, the filters and the sort.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.text import has_control
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, Violation
from server.domain.pagination import TEXT, TIME, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import ResourceType

if TYPE_CHECKING:
    from server.domain.units import Store, UnitOfWork

R = TypeVar("R")

# The widest value each exact-match filter can equal: its column's size. A longer
# value could only match nothing, so it is a caller mistake worth naming.
# Longest value of each text filter, by its API name (the OpenAPI documents say so too).
FILTER_MAX = {"action": 200, "actor": 200, "resource": 400, "traceId": 64}
_WORD = re.compile(r"[A-Z][a-z0-9]*|[a-z0-9]+")


class AuditEntryLike(Protocol):
    """An entry as read: a storage row (or an `AuditEntry`) with these attributes."""

    @property
    def entry_id(self) -> str: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def ticket(self) -> str | None: ...
    @property
    def token_id(self) -> str | None: ...
    @property
    def quota_reason(self) -> str | None: ...
    @property
    def quota_ticket(self) -> str | None: ...
    @property
    def backfill_reason(self) -> str | None: ...
    @property
    def backfill_ticket(self) -> str | None: ...
    @property
    def trace_id(self) -> str: ...
    @property
    def before(self) -> str | None: ...
    @property
    def after(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A new entry; `before`/`after` are the snapshots as canonical JSON text."""

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
class AuditQuery:
    """What a listing is narrowed to; None means "any". `since` is inclusive, `until`
    exclusive, both aware UTC datetimes."""

    tenant_id: str
    action: str | None = None
    actor: str | None = None
    resource: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditLog(Protocol):
    """The audit side of a unit of work: append-only."""

    async def append(self, entry: AuditEntry) -> None: ...


class AuditReads(Protocol):
    async def page(
        self, query: AuditQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[AuditEntryLike]:
        """Up to `limit + 1` entries of `query` after the position `after` (created_at,
        entry_id) in `AUDIT_LISTING`'s order, newest first."""
        ...


AUDIT_LISTING: ListingSpec[AuditEntryLike, AuditQuery] = ListingSpec(
    name="audit",
    sort=(SortKey("-createdAt", "created_at", TIME), SortKey("-entryId", "entry_id", TEXT)),
    filters={
        "action": "action",
        "actor": "actor",
        "resource": "resource",
        "traceId": "trace_id",
        "since": "since",
        "until": "until",
    },
)

AuditPage = Page[AuditEntryLike]


def action_name(method: str, resource: ResourceType[Any]) -> str:
    """`{collection}.{verb}`: the verb is the gRPC method's name without the resource's
    own words, in snake case. `/orchestrator.jobengine.v1.SourcesService/PauseSource`
    on sources -> "sources.pause"; `ReplayPendingDeadLetterEntries` on collection
    "deadLetterEntries" -> "deadLetterEntries.replay_pending". The plural is removed
    before the singular; a method naming neither keeps all its words."""
    name = method.rsplit("/", 1)[-1]
    for noun in (resource.collection, resource.singular):
        pascal = "".join(word[:1].upper() + word[1:] for word in _WORD.findall(noun))
        if pascal and pascal in name and name != pascal:
            name = name.replace(pascal, "", 1)
            break
    verb = "_".join(word.lower() for word in _WORD.findall(name))
    return f"{resource.collection}.{verb}"


async def record(
    uow: UnitOfWork,
    call: CallContext,
    resource: ResourceType[R],
    *,
    before: R | None,
    after: R | None,
) -> AuditEntry:
    """Append the entry of `call` changing `resource` from `before` to `after` (None:
    created or deleted) to `uow`, the transaction of the change it records."""
    entry = new_entry(call, resource, before=before, after=after)
    await uow.audit.append(entry)
    return entry


def new_entry(
    call: CallContext, resource: ResourceType[R], *, before: R | None, after: R | None
) -> AuditEntry:
    """The entry `record` appends, for a store that writes it with the change in one
    statement (`Store.insert_plain_job`). Raises ValueError when both are None."""
    subject = after if after is not None else before
    if subject is None:
        raise ValueError("an audited change has a resource before or after it")
    entry = AuditEntry(
        entry_id=str(uuid.uuid4()),
        tenant_id=call.tenant_id,
        actor=call.actor,
        action=action_name(call.method, resource),
        resource=resource.name(resource.id_of(subject)),
        reason=call.operator_reason,
        ticket=call.operator_ticket,
        token_id=call.token_id,
        quota_reason=call.control.quota_reason,
        quota_ticket=call.control.quota_ticket,
        backfill_reason=call.control.backfill_reason,
        backfill_ticket=call.control.backfill_ticket,
        trace_id=call.trace_id,
        before=_dump(resource.snapshot(before) if before is not None else None),
        after=_dump(resource.snapshot(after) if after is not None else None),
        created_at=datetime.now(UTC),
    )
    return entry


def _dump(state: Mapping[str, Any] | None) -> str | None:
    if state is None:
        return None
    return json.dumps(state, sort_keys=True, default=str, separators=(",", ":"))


async def list_audit_entries(
    store: Store,
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
    """One page of the caller's tenant's entries; empty strings and None mean "any".

    Raises InvalidArgument naming every bad filter, a bad `limit` or `continuationToken`.
    """
    tenant_id = call.require_tenant()
    texts = {"action": action, "actor": actor, "resource": resource, "traceId": trace_id}
    _validate_filters(texts, since=since, until=until)
    query = AuditQuery(
        tenant_id=tenant_id,
        action=action or None,
        actor=actor or None,
        resource=resource or None,
        trace_id=trace_id or None,
        since=since,
        until=until,
    )
    return await AUDIT_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.audit.page
    )


def _validate_filters(
    texts: Mapping[str, str], *, since: datetime | None, until: datetime | None
) -> None:
    """Every bad filter at once, each named as the caller spelled it. Control characters
    are refused because no stored value has them and PostgreSQL refuses NUL outright."""
    violations: list[Violation] = []
    for name, value in texts.items():
        if len(value) > FILTER_MAX[name]:
            violations.append(Violation(name, f"must be at most {FILTER_MAX[name]} characters"))
        elif has_control(value):
            violations.append(Violation(name, "must not contain control characters"))
    if since is not None and until is not None and until <= since:
        violations.append(Violation("until", "must be after since"))
    if violations:
        raise InvalidArgument.from_violations(violations)
