"""WatchEvents (issue 12 point 6): the live stream of a tenant's events over gRPC and as
Server-Sent Events at GET /infrastructure/events/watch, resumable with Last-Event-ID,
and ReplayEvents reaching watchers once per event id; on a SQLite file and PostgreSQL.

Events are appended with the statement every writer uses (`insert_events`), and the
real server's publisher (`storage/event_publisher.py`) hands them to the watches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx

from orchestrator.mesh.v1 import events_service_pb2 as pb
from orchestrator.mesh.v1 import events_service_pb2_grpc as pb_grpc
from server.app import Application
from tests.integration.test_events import append, event
from tests.support.auth import TokenFactory

WATCH = "/infrastructure/events/watch"
REPLAY = "/infrastructure/events/replay"
READ = ("orch:read",)
OPERATE = ("orch:read", "orch:operate")
WAIT = 10.0  # seconds a test waits for a message it expects
HEARTBEAT = {"heartbeat": True, "replayed": False, "resumeEventId": ""}  # no `event`


@dataclass
class Sse:
    """The Server-Sent Events of one response, parsed as WHATWG HTML §9.2.6 reads them."""

    lines: AsyncIterator[str]
    events: list[dict[str, Any]] = field(default_factory=list)

    async def next(self) -> dict[str, Any]:
        """The next event: its `id` (None without an id line) and its parsed `data`."""
        found: dict[str, Any] = {"id": None}
        async with asyncio.timeout(WAIT):
            async for line in self.lines:
                if line == "":
                    if "data" in found:
                        return found
                    continue
                name, _, value = line.partition(": ")
                found[name] = json.loads(value) if name == "data" else value
        raise AssertionError("the stream ended")


async def _sse(
    http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str] | None = None
) -> AsyncIterator[tuple[httpx.Response, Sse]]:
    async with http.stream(
        "GET", WATCH, params=params, headers={**headers, "Accept": "text/event-stream"}
    ) as response:
        yield response, Sse(response.aiter_lines())


async def test_sse_watch_sends_a_heartbeat_then_live_events_with_their_ids(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await tokens.headers(tenant, READ)
    async for response, stream in _sse(http, headers, {"type": "job.leased"}):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert await stream.next() == {"id": None, "data": {"result": HEARTBEAT}}

        made = [event(tenant, "job.enqueued", minute=0), event(tenant, "job.leased", minute=1)]
        ids = await append(app, made)
        await append(app, [event(f"{tenant}-b", "job.leased", minute=2)])  # not this tenant's
        got = await stream.next()
        assert got["id"] == str(ids[1])
        result = got["data"]["result"]
        assert result["resumeEventId"] == str(ids[1])
        assert result["replayed"] is False
        assert result["event"] == {
            "eventId": str(ids[1]),
            "tenantId": tenant,
            "type": "job.leased",
            "subject": "jobs/j-1",
            "data": {"n": 1},
            "traceId": "trace-1",
            "time": "2026-01-05T09:01:00Z",
        }
        break


async def test_last_event_id_resumes_after_it_with_the_stored_events_first(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    ids = await append(app, [event(tenant, minute=m) for m in range(4)])
    headers = {**await tokens.headers(tenant, READ), "Last-Event-ID": str(ids[1])}
    # The header wins over the query: a browser reconnects with the URL it first used.
    async for response, stream in _sse(http, headers, {"afterEventId": str(ids[0])}):
        assert response.status_code == 200
        assert (await stream.next())["data"]["result"] == HEARTBEAT
        assert [(await stream.next())["id"] for _ in range(2)] == [str(ids[2]), str(ids[3])]
        [later] = await append(app, [event(tenant, minute=9)])
        assert (await stream.next())["id"] == str(later)
        break


async def test_watch_input_mistakes_are_400_before_any_stream(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = {**await tokens.headers(tenant, READ), "Accept": "text/event-stream"}
    unknown = await http.get(WATCH, params={"type": "job.unknown"}, headers=headers)
    assert unknown.status_code == 400
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.json()["error"].startswith("type: is not an event type the server writes")

    resume = await http.get(WATCH, headers={**headers, "Last-Event-ID": "abc"})
    assert resume.status_code == 400
    assert resume.json()["error"] == (
        "afterEventId: must be an event id: a decimal number from 0 to 9223372036854775807, "
        "got 'abc'"
    )


async def _read(call: Any) -> pb.WatchEventsResponse:
    async with asyncio.timeout(WAIT):
        message: pb.WatchEventsResponse = await call.read()
    return message


async def test_grpc_watch_and_replay_send_each_event_once_per_watcher(
    app: Application,
    http: httpx.AsyncClient,
    grpc_target: str,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    earlier = await append(app, [event(tenant, minute=m) for m in range(2)])
    metadata = tuple((k.lower(), v) for k, v in (await tokens.headers(tenant, READ)).items())
    replay_headers = {
        **await tokens.headers(tenant, OPERATE),
        "X-Stella-Operator-Reason": "a watcher missed them",
    }
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        call = pb_grpc.EventsServiceStub(channel).WatchEvents(
            pb.WatchEventsRequest(), metadata=metadata
        )
        assert (await _read(call)).heartbeat  # live only: the earlier events are not sent
        live = await append(app, [event(tenant, minute=5)])
        first = await _read(call)
        assert (first.event.event_id, first.resume_event_id, first.replayed) == (
            str(live[0]),
            str(live[0]),
            False,
        )

        body = {"fromEventId": str(earlier[0]), "toEventId": str(live[0])}
        replayed = await http.post(REPLAY, json=body, headers=replay_headers)
        assert replayed.status_code == 200, replayed.text
        # Three in the range; the watcher already had the live one.
        assert replayed.json() == {"matched": 3, "delivered": 2, "streamed": 0}
        for expected in earlier:
            message = await _read(call)
            assert (message.event.event_id, message.replayed, message.resume_event_id) == (
                str(expected),
                True,
                "",
            )

        again = await http.post(REPLAY, json=body, headers=replay_headers)
        assert again.json() == {"matched": 3, "delivered": 0, "streamed": 0}
        later = await append(app, [event(tenant, minute=6)])
        assert (await _read(call)).event.event_id == str(later[0])  # nothing in between
        call.cancel()
