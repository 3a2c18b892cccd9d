"""The events API (issue 12 point 6; DESIGN §9): history, replay, clear and watch over
the events table (`domain/events.py`).

- History: the tenant's events in `event_id` order (a total order), filtered by
  type, subject, trace id and time range, with the listings' keyset pagination and
  signed continuation tokens (AIP-158, `domain/pagination.py`).
- Replay: the tenant's events in an inclusive id range, re-published to the
  subscribers (`EventSubscribers`): each watcher and the Redis stream get only the
  events of the range they were not sent yet, so a replay is idempotent by event id.
- Clear: deletes events older than a cutoff, one tenant's or (an operator client
  only) every tenant's, keeping those the outbox has not published yet.
- Watch: a subscription's events in id order after a resume position, with a
  backlog read from storage first and heartbeats while nothing happens.

Filters name the API's fields ("type", "traceId", ...) in every error; an event
type the server never writes is a mistake (INVALID_ARGUMENT), not an empty answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.text import has_control
from server.domain.audit import record
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, PermissionDenied, Violation, shown
from server.domain.events import EVENT_TYPES, EventLike
from server.domain.pagination import KeyCodec, KeyValue, ListingSpec, Page, PageTokens, SortKey
from server.domain.resources import ResourceType

if TYPE_CHECKING:
    from server.domain.units import Store

MAX_EVENT_ID = 2**63 - 1
REPLAY_MAX_SPAN = 10_000  # ids per replay, both bounds included
BACKLOG_PAGE = 500  # events per storage read while a watch catches up
# Longest value of each text filter, by its API name: its column's size.
FILTER_MAX = {"subject": 400, "traceId": 64}


def _event_id_key(value: KeyValue) -> int | None:
    if type(value) is not int or not 0 <= value <= MAX_EVENT_ID:
        return None  # bool is not an int here, nor is a float
    return value


EVENT_ID = KeyCodec(encode=int, decode=_event_id_key)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """What a listing, backlog or range read is narrowed to; None means "any". `since`
    is inclusive, `until` exclusive (aware UTC); `through_event_id` an inclusive upper
    id bound (backlogs and replay ranges; never part of a page token)."""

    tenant_id: str
    type: str | None = None
    subject: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    through_event_id: int | None = None

    def matches(self, event: EventLike) -> bool:
        """Whether a live event passes this query's tenant and filters."""
        return (
            event.tenant_id == self.tenant_id
            and (self.type is None or event.type == self.type)
            and (self.subject is None or event.subject == self.subject)
            and (self.trace_id is None or event.trace_id == self.trace_id)
        )


EVENTS_LISTING: ListingSpec[EventLike, EventQuery] = ListingSpec(
    name="events",
    sort=(SortKey("eventId", "event_id", EVENT_ID),),
    filters={
        "type": "type",
        "subject": "subject",
        "traceId": "trace_id",
        "since": "since",
        "until": "until",
    },
)


class EventFeedReads(Protocol):
    async def page(
        self, query: EventQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[EventLike]:
        """Up to `limit + 1` events of `query` with `event_id` above `after[0]` (None:
        from the first), in id order."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event a subscription hands its watcher: `in_order` events come in id order
    (the watch's position moves to them); the others are re-published or late ones."""

    event: EventLike
    in_order: bool


class Subscription(Protocol):
    """A watcher's registration with the in-process fan-out (`storage/event_publisher.py`)."""

    @property
    def start(self) -> int:
        """Every event with an id up to this one was released before the subscription
        (or its last `restart`): the watcher reads those from storage."""
        ...

    @property
    def lagging(self) -> bool:
        """The watcher fell too far behind and deliveries were dropped: `restart`."""
        ...

    def restart(self) -> int:
        """Drop what is queued and deliver again from the current release; the new
        `start`."""
        ...

    def moved_to(self, position: int) -> None:
        """The watcher has sent every matching event up to `position`."""
        ...

    async def next(self, timeout: float) -> Delivery | None:
        """The next delivery, or None when `timeout` seconds pass without one."""
        ...


class EventSubscribers(Protocol):
    """Who events are published to: this process's watchers and the outbox's stream."""

    def subscribe(self, query: EventQuery, origin: int | None) -> Subscription:
        """Register a watcher of `query` that has been sent every matching event up to
        `origin` (None: the current release); `close` it when done."""
        ...

    def unsubscribe(self, subscription: Subscription) -> None: ...

    def stopping(self) -> bool:
        """Whether watches should end now (the server is stopping)."""
        ...

    async def replay(self, tenant_id: str, events: Sequence[EventLike]) -> tuple[int, int]:
        """Re-publish `events` (one tenant's, id order) to every subscriber that was not
        sent them: (deliveries to watchers, entries added to the stream). Raises
        Unavailable when the stream cannot be reached (nothing is re-sent then)."""
        ...

    async def unpublished_above(self) -> int | None:
        """Events above this id may not be published to the stream yet (None: no
        stream, nothing to keep)."""
        ...


# --- checks -----------------------------------------------------------------------------


def parse_event_id(text: str, *, field: str) -> int:
    """An event id as the API spells it (a decimal string) -> int. Raises InvalidArgument
    naming `field` for anything else."""
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > MAX_EVENT_ID:
        raise InvalidArgument.of(
            field,
            f"must be an event id: a decimal number from 0 to {MAX_EVENT_ID}, got {shown(value)}",
        )
    return int(value)


def _type_violation(type_: str) -> Violation | None:
    if not type_ or type_ in EVENT_TYPES:
        return None
    known = ", ".join(sorted(EVENT_TYPES))
    return Violation(
        "type", f"is not an event type the server writes ({known}), got {shown(type_)}"
    )


def _filter_violations(
    texts: Mapping[str, str], *, since: datetime | None, until: datetime | None
) -> list[Violation]:
    violations: list[Violation] = []
    bad_type = _type_violation(texts["type"])
    if bad_type is not None:
        violations.append(bad_type)
    for name in FILTER_MAX:
        value = texts[name]
        if len(value) > FILTER_MAX[name]:
            violations.append(Violation(name, f"must be at most {FILTER_MAX[name]} characters"))
        elif has_control(value):
            violations.append(Violation(name, "must not contain control characters"))
    if since is not None and until is not None and until <= since:
        violations.append(Violation("until", "must be after since"))
    return violations


def event_query(
    call: CallContext,
    *,
    type: str,
    subject: str,
    trace_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EventQuery:
    """The caller's tenant's query; empty strings and None mean "any". Raises
    InvalidArgument naming every bad filter at once."""
    tenant_id = call.require_tenant()
    texts = {"type": type, "subject": subject, "traceId": trace_id}
    violations = _filter_violations(texts, since=since, until=until)
    if violations:
        raise InvalidArgument.from_violations(violations)
    return EventQuery(
        tenant_id=tenant_id,
        type=type or None,
        subject=subject or None,
        trace_id=trace_id or None,
        since=since,
        until=until,
    )


# --- history ----------------------------------------------------------------------------


async def list_events(
    reads: EventFeedReads,
    tokens: PageTokens,
    call: CallContext,
    *,
    type: str,
    subject: str,
    trace_id: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    continuation_token: str,
) -> Page[EventLike]:
    """One page of the caller's tenant's events, oldest first.

    Raises InvalidArgument naming every bad filter, a bad `limit` or
    `continuationToken`."""
    query = event_query(
        call, type=type, subject=subject, trace_id=trace_id, since=since, until=until
    )
    return await EVENTS_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=reads.page
    )


# --- replay -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """`matched` events of the tenant in the range; `delivered` to watchers (one per
    watcher and event); `streamed` entries added to the Redis stream."""

    first: int
    last: int
    matched: int
    delivered: int
    streamed: int


def replay_range(from_event_id: str, to_event_id: str) -> tuple[int, int]:
    """The inclusive range (first, last). Raises InvalidArgument naming the field: a
    missing or malformed bound, an inverted range, one wider than REPLAY_MAX_SPAN."""
    violations: list[Violation] = []
    bounds: dict[str, int] = {}
    for name, text in (("fromEventId", from_event_id), ("toEventId", to_event_id)):
        if not text.strip():
            violations.append(Violation(name, "is required: an event id"))
            continue
        try:
            bounds[name] = parse_event_id(text, field=name)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    if violations:
        raise InvalidArgument.from_violations(violations)
    first, last = bounds["fromEventId"], bounds["toEventId"]
    if last < first:
        raise InvalidArgument.of(
            "toEventId",
            f"must not be before fromEventId ({first}): the range is empty, got {last}",
        )
    if last - first + 1 > REPLAY_MAX_SPAN:
        raise InvalidArgument.of(
            "toEventId",
            f"must be at most {REPLAY_MAX_SPAN - 1} after fromEventId ({first}); replay a "
            f"wider range in parts, got {last}",
        )
    return first, last


def _replay_snapshot(result: ReplayResult) -> Mapping[str, Any]:
    return {
        "fromEventId": str(result.first),
        "toEventId": str(result.last),
        "matched": result.matched,
        "delivered": result.delivered,
        "streamed": result.streamed,
    }


EVENT_REPLAY: ResourceType[ReplayResult] = ResourceType(
    singular="event range",
    collection="events",
    id_field="fromEventId",
    id_of=lambda result: f"{result.first}-{result.last}",
    snapshot=_replay_snapshot,
)


async def replay_events(
    store: Store,
    reads: EventFeedReads,
    subscribers: EventSubscribers,
    call: CallContext,
    *,
    from_event_id: str,
    to_event_id: str,
) -> ReplayResult:
    """Re-publish the caller's tenant's events in the range; audited ("events.replay",
    resource "events/{first}-{last}") in one unit of work with nothing else, which
    commits only when the re-publishing succeeded.

    Raises InvalidArgument (`replay_range`), Unavailable (the stream is unreachable)."""
    tenant_id = call.require_tenant()
    first, last = replay_range(from_event_id, to_event_id)
    query = EventQuery(tenant_id=tenant_id, through_event_id=last)
    events = list(await reads.page(query, (first - 1,), REPLAY_MAX_SPAN))
    async with store.transaction() as uow:
        delivered, streamed = await subscribers.replay(tenant_id, events)
        result = ReplayResult(first, last, len(events), delivered, streamed)
        await record(uow, call, EVENT_REPLAY, before=None, after=result)
    return result


# --- clear ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClearResult:
    """What a clear did: `tenant_id` None when every tenant's events were cleared."""

    tenant_id: str | None
    older_than: datetime
    deleted: int
    retained_unpublished: int


def _clear_snapshot(result: ClearResult) -> Mapping[str, Any]:
    return {
        "tenantId": result.tenant_id,
        "olderThan": result.older_than.isoformat().replace("+00:00", "Z"),
        "deleted": result.deleted,
        "retainedUnpublished": result.retained_unpublished,
    }


EVENT_CLEAR: ResourceType[ClearResult] = ResourceType(
    singular="events",
    collection="events",
    id_field="tenantId",
    id_of=lambda result: result.tenant_id or "-",
    snapshot=_clear_snapshot,
)


def clear_scope(call: CallContext, tenant_id: str) -> str | None:
    """The tenant a clear deletes from (None: every tenant). A client bound to a tenant
    clears its own only; an operator client (not bound) any, or all. Raises
    PermissionDenied naming `tenantId` for a bound client naming another tenant."""
    named = tenant_id.strip() or None
    if call.bound_tenant is None:
        return named
    if named is not None and named != call.bound_tenant:
        raise PermissionDenied(
            f"tenantId: a client bound to tenant {call.bound_tenant!r} clears only its own "
            f"events, not tenant {named!r}'s; platform-wide clears need an operator client",
            reason="TENANT_FORBIDDEN",
            metadata={"tenant": named},
        )
    return call.bound_tenant


async def clear_events(
    store: Store,
    subscribers: EventSubscribers,
    call: CallContext,
    *,
    older_than: datetime | None,
    tenant_id: str,
    now: datetime,
) -> ClearResult:
    """Delete events written before `older_than`, in one unit of work with its audit
    entry ("events.clear", resource "events/{tenantId}" or "events/-" for all tenants).
    As every platform-level action's (the registry's too), the entry has no tenant: the
    tenant cleared is its resource and its `after.tenantId`.

    Raises InvalidArgument naming `olderThan` (missing or in the future),
    PermissionDenied (`clear_scope`)."""
    if older_than is None:
        raise InvalidArgument.of("olderThan", "is required: the time before which to delete")
    if older_than > now:
        raise InvalidArgument.of(
            "olderThan", f"must not be in the future (now is {now.isoformat()})"
        )
    scope = clear_scope(call, tenant_id)
    keep_above = await subscribers.unpublished_above()
    async with store.transaction() as uow:
        deleted, kept = await uow.events.clear(
            tenant_id=scope, older_than=older_than, keep_above=keep_above
        )
        result = ClearResult(scope, older_than, deleted, kept)
        await record(uow, call, EVENT_CLEAR, before=None, after=result)
    return result


# --- watch ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchItem:
    """One message of a watch: an event (`in_order`: the position moves to it) or, with
    `event` None, a heartbeat."""

    event: EventLike | None
    in_order: bool = True


async def watch_events(
    reads: EventFeedReads,
    subscribers: EventSubscribers,
    query: EventQuery,
    *,
    after_event_id: int | None,
    heartbeat_seconds: float,
) -> AsyncIterator[WatchItem]:
    """The watch of `query`: a heartbeat first, then the stored events after
    `after_event_id` (when given), then live ones in id order, a heartbeat every
    `heartbeat_seconds` without one. Ends when `subscribers.stopping()` turns true."""
    stopping = subscribers.stopping
    subscription = subscribers.subscribe(query, after_event_id)
    try:
        yield WatchItem(None)
        position = subscription.start if after_event_id is None else after_event_id
        start = subscription.start
        while not stopping():
            async for event in _backlog(reads, query, position, start):
                position = int(event.event_id)
                subscription.moved_to(position)
                yield WatchItem(event)
            position = max(position, start)
            async for item in _live(subscription, heartbeat_seconds, position, stopping):
                if item.event is not None and item.in_order:
                    position = int(item.event.event_id)
                yield item
            if subscription.lagging:
                start = subscription.restart()
    finally:
        subscribers.unsubscribe(subscription)


async def _backlog(
    reads: EventFeedReads, query: EventQuery, position: int, start: int
) -> AsyncIterator[EventLike]:
    """Stored events of `query` in (position, start], in id order, page by page."""
    bounded = EventQuery(
        tenant_id=query.tenant_id,
        type=query.type,
        subject=query.subject,
        trace_id=query.trace_id,
        through_event_id=start,
    )
    while position < start:
        rows = await reads.page(bounded, (position,), BACKLOG_PAGE)
        for event in rows[:BACKLOG_PAGE]:
            position = int(event.event_id)
            yield event
        if len(rows) <= BACKLOG_PAGE:
            return


async def _live(
    subscription: Subscription,
    heartbeat_seconds: float,
    position: int,
    stopping: Callable[[], bool],
) -> AsyncIterator[WatchItem]:
    """Deliveries until the subscription lags (then the caller reads the gap from
    storage) or `stopping()`; in-order ones at or below `position` are skipped."""
    while not subscription.lagging and not stopping():
        delivery = await subscription.next(heartbeat_seconds)
        if delivery is None:
            if not subscription.lagging and not stopping():
                yield WatchItem(None)
            continue
        event_id = int(delivery.event.event_id)
        if delivery.in_order:
            if event_id <= position:
                continue
            position = event_id
            subscription.moved_to(position)
        yield WatchItem(delivery.event, delivery.in_order)
