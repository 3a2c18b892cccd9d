"""EventsService (issue 12 point 6): read the request, call the domain
(`server/domain/event_feed.py`), convert the result. Publication (watchers, the Redis
stream) is `server/storage/event_publisher.py`'s; times come from the process clock."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from orchestrator.mesh.v1 import events_service_pb2 as pb
from orchestrator.mesh.v1 import events_service_pb2_grpc as pb_grpc
from server.domain import event_feed
from server.domain.context import current_call
from server.domain.errors import InvalidArgument
from server.domain.events import EventLike
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.identity.components import Clocks
from server.interceptors.tenancy import IDENTIFIER_PATTERN, IDENTIFIER_RULE
from server.services import convert

_HEARTBEAT = pb.WatchEventsResponse(heartbeat=True)
_TENANT = re.compile(IDENTIFIER_PATTERN)


def event(row: EventLike) -> pb.Event:
    """An events-table row as the API's Event (`data` parsed from its JSON text)."""
    message = pb.Event(
        event_id=str(row.event_id),
        tenant_id=row.tenant_id or "",
        type=row.type,
        subject=row.subject,
        trace_id=row.trace_id or "",
        time=convert.timestamp(row.time),
    )
    message.data.update(json.loads(row.data))
    return message


def _time(request: Message, name: str, api_name: str) -> datetime | None:
    """The request's Timestamp field `name` as an aware UTC datetime, None when unset;
    out of RFC 3339's range is INVALID_ARGUMENT naming `api_name`."""
    if not request.HasField(name):
        return None
    value: timestamp_pb2.Timestamp = getattr(request, name)
    return convert.datetime_of(value, field=api_name)


class EventsService(pb_grpc.EventsServiceServicer):
    def __init__(
        self,
        store: Store,
        feed: event_feed.EventFeedReads,
        publication: event_feed.EventSubscribers,
        tokens: PageTokens,
        clocks: Clocks,
        heartbeat_seconds: float,
    ) -> None:
        self._store = store
        self._feed = feed
        self._publication = publication
        self._tokens = tokens
        self._clocks = clocks
        self._heartbeat = heartbeat_seconds

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        page = await event_feed.list_events(
            self._feed,
            self._tokens,
            current_call(),
            type=request.type,
            subject=request.subject,
            trace_id=request.trace_id,
            since=_time(request, "since", "since"),
            until=_time(request, "until", "until"),
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListEventsResponse(items=[event(row) for row in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def ReplayEvents(
        self, request: pb.ReplayEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayEventsResponse:
        result = await event_feed.replay_events(
            self._store,
            self._feed,
            self._publication,
            current_call(),
            from_event_id=request.from_event_id,
            to_event_id=request.to_event_id,
        )
        return pb.ReplayEventsResponse(
            matched=result.matched, delivered=result.delivered, streamed=result.streamed
        )

    async def ClearEvents(
        self, request: pb.ClearEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearEventsResponse:
        if request.tenant_id and not _TENANT.fullmatch(request.tenant_id):
            raise InvalidArgument.of("tenantId", IDENTIFIER_RULE)  # the X-Stella-Tenant rule
        result = await event_feed.clear_events(
            self._store,
            self._publication,
            current_call(),
            older_than=_time(request, "older_than", "olderThan"),
            tenant_id=request.tenant_id,
            now=datetime.fromtimestamp(self._clocks.wall(), UTC),
        )
        return pb.ClearEventsResponse(
            deleted=result.deleted,
            retained_unpublished=result.retained_unpublished,
            tenant_id=result.tenant_id or "",
        )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        call = current_call()
        query = event_feed.event_query(
            call, type=request.type, subject=request.subject, trace_id=request.trace_id
        )
        after = request.after_event_id.strip()
        after_id = event_feed.parse_event_id(after, field="afterEventId") if after else None
        items = event_feed.watch_events(
            self._feed,
            self._publication,
            query,
            after_event_id=after_id,
            heartbeat_seconds=self._heartbeat,
        )
        async for item in items:
            if item.event is None:
                yield _HEARTBEAT
                continue
            message = pb.WatchEventsResponse(event=event(item.event), replayed=not item.in_order)
            if item.in_order:
                message.resume_event_id = message.event.event_id
            yield message
