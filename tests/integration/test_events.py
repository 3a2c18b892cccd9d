"""The events API (issue 12 point 6, DESIGN §9): history, replay and clear over REST and
gRPC against the session's real server, on a SQLite file and PostgreSQL.

Events are made the way the product makes them (a quota created over REST writes
`quota.created` in its transaction) or appended with the one statement every writer
uses (`repositories/events.py` `insert_events`), when a test needs exact types,
subjects, traces and times. Values, statuses and stored rows are asserted exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa

from orchestrator.mesh.v1 import events_service_pb2 as pb
from orchestrator.mesh.v1 import events_service_pb2_grpc as pb_grpc
from server.app import Application
from server.domain.events import EVENT_TYPES, NewEvent
from server.storage.repositories.events import insert_events
from server.storage.tables import AuditEntryRow, EventRow, table_of
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock

HISTORY = "/infrastructure/events/history"
REPLAY = "/infrastructure/events/replay"
CLEAR = "/infrastructure/events/clear"
CACHE = "private, max-age=60, stale-if-error=300"
READ = ("orch:read",)
OPERATE = ("orch:read", "orch:operate")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_events = table_of(EventRow)
_audit = table_of(AuditEntryRow)


async def append(app: Application, events: Sequence[NewEvent]) -> list[int]:
    """Append `events` in one transaction; their ids, in order."""
    async with app.db.transaction() as session:
        conn = await session.connection()
        before = (await conn.execute(sa.select(sa.func.max(_events.c.event_id)))).scalar() or 0
        await insert_events(conn, events)
        rows = await conn.execute(
            sa.select(_events.c.event_id)
            .where(
                _events.c.event_id > before, _events.c.tenant_id.in_({e.tenant_id for e in events})
            )
            .order_by(_events.c.event_id)
        )
        return [int(row.event_id) for row in rows]


def event(
    tenant: str,
    type_: str = "job.enqueued",
    subject: str = "jobs/j-1",
    *,
    minute: int = 0,
    trace: str | None = "trace-1",
    data: dict[str, Any] | None = None,
) -> NewEvent:
    return NewEvent(
        tenant_id=tenant,
        type=type_,
        subject=subject,
        data=data or {"n": minute},
        trace_id=trace,
        time=T0 + timedelta(minutes=minute),
    )


def doc(event_id: int, tenant: str, ev: NewEvent) -> dict[str, Any]:
    """An event as the API answers it (JSON names; an empty trace id for none)."""
    return {
        "eventId": str(event_id),
        "tenantId": tenant,
        "type": ev.type,
        "subject": ev.subject,
        "data": dict(ev.data),
        "traceId": ev.trace_id or "",
        "time": ev.time.isoformat().replace("+00:00", "Z"),
    }


def violations(body: dict[str, Any]) -> list[tuple[str, str]]:
    for detail in body.get("details", ()):
        if detail["@type"].endswith("BadRequest"):
            return [(v["field"], v["description"]) for v in detail["fieldViolations"]]
    return []


# --- history ---------------------------------------------------------------------------


async def test_history_lists_the_tenants_events_oldest_first_with_exact_values(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    made = [
        event(tenant, "job.enqueued", "jobs/a", minute=0),
        event(tenant, "job.leased", "jobs/a", minute=1, trace=None, data={"to": "leased"}),
        event(tenant, "quota.paused", "quotas/q", minute=2, trace="trace-2"),
    ]
    ids = await append(app, made)
    await append(app, [event(f"{tenant}-other", minute=3)])  # never shown to tenant

    response = await http.get(HISTORY, headers=await tokens.headers(tenant, READ))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == CACHE
    assert response.headers["etag"].startswith('"')
    expected = [doc(i, tenant, ev) for i, ev in zip(ids, made, strict=True)]
    assert response.json() == {"items": expected}


async def test_a_quota_created_over_rest_is_in_the_history_with_its_trace_id(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    quota_headers = await tokens.headers(tenant, ("orch:quota",), quota_reason="capacity")
    created = await http.post(
        "/jobengine/quotas",
        json={"jobType": "thumbnail", "burst": 2},
        headers={
            **quota_headers,
            "X-Stella-Operator-Reason": "more thumbnails",
            "X-Stella-Trace-Id": "trace-quota-events",
        },
    )
    assert created.status_code == 201, created.text
    quota_id = created.json()["quotaId"]

    response = await http.get(
        HISTORY,
        params={"traceId": "trace-quota-events"},
        headers=await tokens.headers(tenant, READ),
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert (item["type"], item["subject"], item["tenantId"], item["traceId"]) == (
        "quota.created",
        f"quotas/{quota_id}",
        tenant,
        "trace-quota-events",
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "job.leased"}, [1, 3]),
        ({"subject": "jobs/b"}, [2, 3]),
        ({"traceId": "trace-x"}, [0]),
        ({"since": "2026-01-05T09:01:00Z"}, [1, 2, 3]),
        ({"until": "2026-01-05T09:02:00Z"}, [0, 1]),
        ({"since": "2026-01-05T09:01:00Z", "until": "2026-01-05T09:03:00Z"}, [1, 2]),
        ({"type": "job.leased", "subject": "jobs/b"}, [3]),
        ({"type": "quota.deleted"}, []),
    ],
    ids=lambda value: str(value),
)
async def test_history_filters(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    params: dict[str, str],
    expected: list[int],
) -> None:
    made = [
        event(tenant, "job.enqueued", "jobs/a", minute=0, trace="trace-x"),
        event(tenant, "job.leased", "jobs/a", minute=1),
        event(tenant, "job.enqueued", "jobs/b", minute=2),
        event(tenant, "job.leased", "jobs/b", minute=3),
    ]
    ids = await append(app, made)
    response = await http.get(HISTORY, params=params, headers=await tokens.headers(tenant, READ))
    assert response.status_code == 200, response.text
    assert [item["eventId"] for item in response.json()["items"]] == [str(ids[i]) for i in expected]


async def test_history_pages_with_signed_tokens_bound_to_the_filters(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    ids = await append(app, [event(tenant, minute=m) for m in range(5)])
    headers = await tokens.headers(tenant, READ)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "type": "job.enqueued"}
    pages = 0
    while True:
        response = await http.get(HISTORY, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["eventId"] for item in body["items"]]
        pages += 1
        if "continuationToken" not in body:
            break
        params["continuationToken"] = body["continuationToken"]
    assert (seen, pages) == ([str(i) for i in ids], 3)

    first = (await http.get(HISTORY, params={"limit": 2}, headers=headers)).json()
    mismatch = await http.get(
        HISTORY,
        params={"continuationToken": first["continuationToken"], "type": "job.leased"},
        headers=headers,
    )
    assert mismatch.status_code == 400
    assert violations(mismatch.json()) == [
        (
            "continuationToken",
            "was issued for a different tenant, filter or sort; start from the first page",
        )
    ]


@pytest.mark.parametrize(
    ("params", "field", "description"),
    [
        (
            {"type": "job.exploded"},
            "type",
            f"is not an event type the server writes ({', '.join(sorted(EVENT_TYPES))}), "
            "got 'job.exploded'",
        ),
        ({"subject": "x" * 401}, "subject", "must be at most 400 characters"),
        ({"traceId": "a\tb"}, "traceId", "must not contain control characters"),
        (
            {"since": "2026-01-05T10:00:00Z", "until": "2026-01-05T10:00:00Z"},
            "until",
            "must be after since",
        ),
        ({"limit": "-1"}, "limit", None),
        ({"continuationToken": "forged.token"}, "continuationToken", None),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_bad_history_filters_are_400_naming_the_field(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    params: dict[str, str],
    field: str,
    description: str | None,
) -> None:
    response = await http.get(HISTORY, params=params, headers=await tokens.headers(tenant, READ))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    [(named, text)] = violations(response.json())
    assert named == field
    if description is not None:
        assert text == description


async def test_unknown_type_over_grpc_is_invalid_argument(
    grpc_target: str, tokens: TokenFactory, tenant: str
) -> None:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.EventsServiceStub(channel)
        metadata = tuple((k.lower(), v) for k, v in (await tokens.headers(tenant, READ)).items())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListEvents(pb.ListEventsRequest(type="nope"), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("type: is not an event type the server writes")


# --- replay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (
            {},
            [
                ("fromEventId", "is required: an event id"),
                ("toEventId", "is required: an event id"),
            ],
        ),
        ({"fromEventId": "5"}, [("toEventId", "is required: an event id")]),
        (
            {"fromEventId": "9", "toEventId": "5"},
            [("toEventId", "must not be before fromEventId (9): the range is empty, got 5")],
        ),
        (
            {"fromEventId": "1", "toEventId": "10001"},
            [
                (
                    "toEventId",
                    "must be at most 9999 after fromEventId (1); replay a wider range in "
                    "parts, got 10001",
                )
            ],
        ),
        (
            {"fromEventId": "-3", "toEventId": "x"},
            [
                (
                    "fromEventId",
                    "must be an event id: a decimal number from 0 to 9223372036854775807, got '-3'",
                ),
                (
                    "toEventId",
                    "must be an event id: a decimal number from 0 to 9223372036854775807, got 'x'",
                ),
            ],
        ),
    ],
    ids=("empty", "no-end", "inverted", "too-wide", "malformed"),
)
async def test_bad_replay_ranges_are_400_naming_the_field(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    body: dict[str, str],
    found: list[tuple[str, str]],
) -> None:
    headers = {**await tokens.headers(tenant, OPERATE), "X-Stella-Operator-Reason": "resend"}
    response = await http.post(REPLAY, json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert violations(response.json()) == found
    async with app.db.read() as conn:
        count = sa.select(sa.func.count()).select_from(_audit).where(_audit.c.tenant_id == tenant)
        assert (await conn.execute(count)).scalar_one() == 0  # nothing written


async def test_replay_is_audited_and_counts_the_tenants_events_of_the_range(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    ids = await append(app, [event(tenant, minute=m) for m in range(3)])
    await append(app, [event(f"{tenant}-b", minute=9)])
    headers = {
        **await tokens.headers(tenant, OPERATE),
        "X-Stella-Operator-Reason": "a consumer lost its state",
        "X-Stella-Trace-Id": f"replay-{tenant}",
    }
    body = {"fromEventId": str(ids[0]), "toEventId": str(ids[-1] + 1)}
    response = await http.post(REPLAY, json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"matched": 3, "delivered": 0, "streamed": 0}  # nobody listens

    async with app.db.read() as conn:
        rows = (
            await conn.execute(sa.select(_audit).where(_audit.c.trace_id == f"replay-{tenant}"))
        ).all()
    [row] = rows
    assert (row.tenant_id, row.action, row.resource, row.reason) == (
        tenant,
        "events.replay",
        f"events/{ids[0]}-{ids[-1] + 1}",
        "a consumer lost its state",
    )
    assert row.before is None
    assert row.after == (
        f'{{"delivered":0,"fromEventId":"{ids[0]}","matched":3,"streamed":0,'
        f'"toEventId":"{ids[-1] + 1}"}}'
    )


async def test_replay_needs_the_operator_reason(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    response = await http.post(
        REPLAY,
        json={"fromEventId": "1", "toEventId": "2"},
        headers=await tokens.headers(tenant, OPERATE),
    )
    assert response.status_code == 400
    assert violations(response.json()) == [
        ("X-Stella-Operator-Reason", "header is required for this operation and must not be blank")
    ]


# --- clear -----------------------------------------------------------------------------


async def _stored(app: Application, tenant: str) -> list[int]:
    async with app.db.read() as conn:
        rows = await conn.execute(
            sa.select(_events.c.event_id)
            .where(_events.c.tenant_id == tenant)
            .order_by(_events.c.event_id)
        )
        return [int(row.event_id) for row in rows]


async def test_a_bound_client_clears_its_own_tenants_old_events_only(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    other = f"{tenant}-b"
    ids = await append(app, [event(tenant, minute=m) for m in (0, 1, 10)])
    other_ids = await append(app, [event(other, minute=0)])
    headers = {
        **await tokens.headers(tenant, ("orch:admin",)),
        "X-Stella-Operator-Reason": "retention",
        "X-Stella-Trace-Id": f"clear-{tenant}",
    }
    response = await http.post(CLEAR, json={"olderThan": "2026-01-05T09:05:00Z"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": "2", "retainedUnpublished": "0", "tenantId": tenant}
    assert await _stored(app, tenant) == [ids[2]]
    assert await _stored(app, other) == other_ids

    async with app.db.read() as conn:
        [row] = (
            await conn.execute(sa.select(_audit).where(_audit.c.trace_id == f"clear-{tenant}"))
        ).all()
    assert (row.tenant_id, row.action, row.resource, row.reason) == (
        None,  # platform level, as the registry's entries: the tenant is in the resource
        "events.clear",
        f"events/{tenant}",
        "retention",
    )
    assert row.after == (
        f'{{"deleted":2,"olderThan":"2026-01-05T09:05:00Z","retainedUnpublished":0,'
        f'"tenantId":"{tenant}"}}'
    )

    forbidden = await http.post(
        CLEAR, json={"olderThan": "2026-01-05T09:05:00Z", "tenantId": other}, headers=headers
    )
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.json()["error"].startswith(f"tenantId: a client bound to tenant '{tenant}'")
    assert await _stored(app, other) == other_ids


async def test_an_operator_client_clears_every_tenant_or_the_one_it_names(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    other = f"{tenant}-b"
    early = datetime(2001, 1, 1, tzinfo=UTC)
    old = [
        NewEvent(tenant_id=t, type="job.enqueued", subject="jobs/x", time=early)
        for t in (tenant, other)
    ]
    await append(app, old)
    kept = await append(app, [event(tenant, minute=0)])
    operator = await tokens.token(None, ("orch:admin",), tenants=())
    headers = {"Authorization": f"Bearer {operator}", "X-Stella-Operator-Reason": "retention"}

    named = await http.post(
        CLEAR, json={"olderThan": "2001-06-01T00:00:00Z", "tenantId": other}, headers=headers
    )
    assert named.status_code == 200, named.text
    assert named.json() == {"deleted": "1", "retainedUnpublished": "0", "tenantId": other}
    assert await _stored(app, other) == []

    everyone = await http.post(CLEAR, json={"olderThan": "2001-06-01T00:00:00Z"}, headers=headers)
    assert everyone.status_code == 200, everyone.text
    assert everyone.json() == {"deleted": "1", "retainedUnpublished": "0", "tenantId": ""}
    assert await _stored(app, tenant) == kept


async def test_clearing_a_jobs_events_empties_its_history(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, clock: TestClock
) -> None:
    """GetJob's history is a view of the job's events: a clear takes them with it."""
    write = await tokens.headers(tenant, OPERATE)
    source = await http.post(
        "/jobengine/sources",
        json={"name": "events-clear", "sourceType": "manual"},
        headers={**write, "X-Stella-Operator-Reason": "setup"},
    )
    assert source.status_code == 201, source.text
    job = await http.post(
        "/jobengine/jobs",
        json={"jobType": "thumbnail", "sourceId": source.json()["sourceId"]},
        headers={**write, "X-Stella-Operator-Reason": "setup"},
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["jobId"]
    before = (await http.get(f"/jobengine/jobs/{job_id}", headers=write)).json()
    assert [e["type"] for e in before["history"]] == ["job.enqueued"]
    await asyncio.sleep(0.01)  # the event's time is before the cutoff

    admin = {
        **await tokens.headers(tenant, ("orch:admin",)),
        "X-Stella-Operator-Reason": "retention",
    }
    now = datetime.fromtimestamp(clock.wall(), UTC)  # the server's time, after the enqueue
    cutoff = now.isoformat().replace("+00:00", "Z")
    response = await http.post(CLEAR, json={"olderThan": cutoff}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == "1"
    after = (await http.get(f"/jobengine/jobs/{job_id}", headers=write)).json()
    assert after["history"] == []
    assert after["job"]["status"] == "queued"  # the job itself is untouched


@pytest.mark.parametrize(
    ("body", "field", "description"),
    [
        ({}, "olderThan", "is required: the time before which to delete"),
        ({"olderThan": "2999-01-01T00:00:00Z"}, "olderThan", None),
        (
            {"olderThan": "2001-01-01T00:00:00Z", "tenantId": "Bad Tenant!"},
            "tenantId",
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
    ],
    ids=("missing", "future", "bad-tenant"),
)
async def test_bad_clear_requests_are_400_naming_the_field(
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    body: dict[str, str],
    field: str,
    description: str | None,
) -> None:
    headers = {
        **await tokens.headers(tenant, ("orch:admin",)),
        "X-Stella-Operator-Reason": "retention",
    }
    response = await http.post(CLEAR, json=body, headers=headers)
    assert response.status_code == 400, response.text
    [(named, text)] = violations(response.json())
    assert named == field
    if description is not None:
        assert text == description
    else:
        assert text.startswith("must not be in the future (now is ")


async def test_clear_needs_orch_admin(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = {**await tokens.headers(tenant, OPERATE), "X-Stella-Operator-Reason": "retention"}
    response = await http.post(CLEAR, json={"olderThan": "2001-01-01T00:00:00Z"}, headers=headers)
    assert response.status_code == 403, response.text
