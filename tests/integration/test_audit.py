"""Operator audit end to end (DESIGN.md §4.1, §4.2; issue 4 item 6): mutations made over
gRPC and REST with real tokens, then `GET /jobengine/audit` / AuditService, on SQLite
and PostgreSQL. Values are asserted exactly as the caller sent them."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.protobuf import json_format, timestamp_pb2

from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.sources import SourcesClient
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.transports.rest import RestTransport
from orchestrator.jobengine.v1 import audit_service_pb2 as pb
from tests.support.auth import TokenFactory

_LIST = pb.DESCRIPTOR.services_by_name["AuditService"].methods_by_name["ListAuditEntries"]
CACHE = "private, max-age=60, stale-if-error=300"
OPERATE = ("orch:read", "orch:operate")


@pytest.fixture(params=("grpc", "rest"))
async def transport(
    request: pytest.FixtureRequest, grpc_target: str, http_base: str
) -> AsyncIterator[Transport]:
    chosen: Transport = (
        GrpcTransport(grpc_target) if request.param == "grpc" else RestTransport(http_base)
    )
    try:
        yield chosen
    finally:
        await chosen.close()


def _jti(token: str) -> str:
    """The token's `jti`, read without verification: the test only names the token."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return str(claims["jti"])


async def _client_id(tokens: TokenFactory, tenant: str, scopes: tuple[str, ...] = OPERATE) -> str:
    """The client behind `tokens.token(tenant, scopes)`: the factory caches it per key."""
    return (await tokens.client(tenant, scopes)).client.client_id


def _sources(transport: Transport, tenant: str, token: str, **headers: str) -> SourcesClient:
    return SourcesClient(transport, CallerHeaders(tenant=tenant, access_token=token, **headers))


async def _audit(
    transport: Transport, headers: Mapping[str, str], **fields: Any
) -> pb.ListAuditEntriesResponse:
    return await transport.call(
        _LIST, pb.ListAuditEntriesRequest(**fields), pb.ListAuditEntriesResponse, headers=headers
    )


def _documents(page: pb.ListAuditEntriesResponse) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(item) for item in page.items]


def _created_at(document: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(document.pop("createdAt"))


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def test_mutations_are_listed_newest_first_with_exact_values(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, OPERATE)
    actor = await _client_id(tokens, tenant)
    sources = _sources(
        transport,
        tenant,
        token,
        operator_reason="onboarding the registry",
        operator_ticket="OPS-42",
        trace_id="trace-register-1",
    )
    started = datetime.now(UTC) - timedelta(seconds=1)
    created = await sources.register_source("audited", "webhook")
    sources.headers = CallerHeaders(
        tenant=tenant,
        access_token=token,
        operator_reason="maintenance window",
        trace_id="trace-pause-1",
    )
    await sources.pause_source(created.source_id)
    finished = datetime.now(UTC) + timedelta(seconds=1)

    page = await _audit(transport, await tokens.headers(tenant, OPERATE))
    assert not page.HasField("continuation_token")
    paused, registered = _documents(page)
    assert started <= _created_at(registered) <= _created_at(paused) <= finished
    for document in (paused, registered):
        assert uuid.UUID(document.pop("entryId")).version == 4
    state = {
        "sourceId": created.source_id,
        "name": "audited",
        "sourceType": "webhook",
        "enabled": True,
        "paused": False,
        "projectId": None,
    }
    assert registered == {
        "tenantId": tenant,
        "actor": actor,
        "action": "sources.register",
        "resource": f"sources/{created.source_id}",
        "reason": "onboarding the registry",
        "ticket": "OPS-42",
        "tokenId": _jti(token),
        "traceId": "trace-register-1",
        "after": state,
    }
    assert paused == {
        "tenantId": tenant,
        "actor": actor,
        "action": "sources.pause",
        "resource": f"sources/{created.source_id}",
        "reason": "maintenance window",
        "tokenId": _jti(token),
        "traceId": "trace-pause-1",
        "before": state,
        "after": {**state, "paused": True},
    }


async def test_failed_mutations_write_no_entry(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, OPERATE)
    sources = _sources(transport, tenant, token, operator_reason="first")
    kept = await sources.register_source("taken", "manual")
    attempts: list[tuple[str, Any]] = [
        ("ALREADY_EXISTS", lambda: sources.register_source("taken", "webhook")),
        ("INVALID_ARGUMENT", lambda: sources.register_source("bad type", "Not A Slug")),
        ("NOT_FOUND", lambda: sources.pause_source(str(uuid.uuid4()))),
    ]
    for code, attempt in attempts:
        with pytest.raises(ApiError) as err:
            await attempt()
        assert err.value.code == code
    sources.headers.operator_reason = None
    with pytest.raises(ApiError) as blank:
        await sources.pause_source(kept.source_id)
    assert blank.value.code == "INVALID_ARGUMENT"
    assert blank.value.violations[0][0] == "X-Stella-Operator-Reason"

    page = await _audit(transport, await tokens.headers(tenant, OPERATE))
    assert [(i.action, i.resource) for i in page.items] == [
        ("sources.register", f"sources/{kept.source_id}")
    ]


async def test_token_justification_is_copied_onto_the_entries_it_causes(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    """Seed 003: the reason/ticket a token was granted for travel with every entry the
    token causes, next to the operator's header reason."""
    quota_scopes = (*OPERATE, "orch:quota")
    backfill_scopes = (*OPERATE, "orch:backfill")
    plain = await tokens.token(tenant, OPERATE)
    quota = await tokens.token(
        tenant, quota_scopes, quota_reason="raise capacity for launch", quota_ticket="CAP-7"
    )
    backfill = await tokens.token(tenant, backfill_scopes, backfill_reason="replay outage")
    created = await _sources(transport, tenant, plain, operator_reason="setup").register_source(
        "capacity", "scheduler"
    )
    await _sources(transport, tenant, quota, operator_reason="hold").pause_source(created.source_id)
    await _sources(
        transport, tenant, backfill, operator_reason="go", operator_ticket="OPS-9"
    ).resume_source(created.source_id)

    page = await _audit(transport, await tokens.headers(tenant, OPERATE))
    resumed, paused, registered = page.items
    assert (resumed.action, paused.action, registered.action) == (
        "sources.resume",
        "sources.pause",
        "sources.register",
    )
    assert paused.actor == await _client_id(tokens, tenant, quota_scopes)
    assert paused.token_id == _jti(quota)
    assert (paused.reason, paused.HasField("ticket")) == ("hold", False)
    assert (paused.quota_reason, paused.quota_ticket) == ("raise capacity for launch", "CAP-7")
    assert not paused.HasField("backfill_reason")
    assert not paused.HasField("backfill_ticket")

    assert resumed.actor == await _client_id(tokens, tenant, backfill_scopes)
    assert resumed.token_id == _jti(backfill)
    assert (resumed.reason, resumed.ticket) == ("go", "OPS-9")
    assert resumed.backfill_reason == "replay outage"
    assert not resumed.HasField("backfill_ticket")
    assert not resumed.HasField("quota_reason")

    assert registered.token_id == _jti(plain)
    assert [registered.HasField(f) for f in ("quota_reason", "backfill_reason")] == [False, False]


async def test_filters_select_exactly(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, OPERATE)
    sources = _sources(transport, tenant, token, operator_reason="seed", trace_id="tr-a")
    first = await sources.register_source("one", "manual")
    second = await sources.register_source("two", "manual")
    sources.headers.trace_id = "tr-b"
    await sources.pause_source(first.source_id)
    headers = await tokens.headers(tenant, OPERATE)
    everything = (await _audit(transport, headers)).items
    newest = everything[0].created_at.ToDatetime(tzinfo=UTC)

    def resources(page: pb.ListAuditEntriesResponse) -> list[str]:
        return [f"{i.action} {i.resource}" for i in page.items]

    pause_one = f"sources.pause sources/{first.source_id}"
    register_one = f"sources.register sources/{first.source_id}"
    register_two = f"sources.register sources/{second.source_id}"
    assert resources(await _audit(transport, headers, action="sources.pause")) == [pause_one]
    assert resources(await _audit(transport, headers, trace_id="tr-a")) == [
        register_two,
        register_one,
    ]
    by_resource = await _audit(transport, headers, resource=f"sources/{first.source_id}")
    assert resources(by_resource) == [pause_one, register_one]
    assert len((await _audit(transport, headers, actor=everything[0].actor)).items) == 3
    assert (await _audit(transport, headers, actor="someone-else")).items == []
    at_newest = await _audit(transport, headers, since=_timestamp(newest))
    assert resources(at_newest) == [pause_one]
    before_newest = await _audit(transport, headers, until=_timestamp(newest))
    assert resources(before_newest) == [register_two, register_one]


async def test_pages_are_bound_to_their_filters(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, OPERATE)
    sources = _sources(transport, tenant, token, operator_reason="seed")
    for name in ("a", "b", "c"):
        await sources.register_source(name, "manual")
    headers = await tokens.headers(tenant, OPERATE)
    walked: list[str] = []
    continuation = ""
    while True:
        page = await _audit(transport, headers, limit=2, continuation_token=continuation)
        walked.extend(item.entry_id for item in page.items)
        if not page.HasField("continuation_token"):
            break
        continuation = page.continuation_token
    everything = await _audit(transport, headers)
    assert walked == [item.entry_id for item in everything.items]
    assert len(walked) == 3

    first = await _audit(transport, headers, limit=1)
    with pytest.raises(ApiError) as mismatch:
        await _audit(
            transport,
            headers,
            limit=1,
            action="sources.register",
            continuation_token=first.continuation_token,
        )
    assert (mismatch.value.code, mismatch.value.reason) == (
        "INVALID_ARGUMENT",
        "PAGE_TOKEN_MISMATCH",
    )
    assert [field for field, _ in mismatch.value.violations] == ["continuationToken"]
    with pytest.raises(ApiError) as negative:
        await _audit(transport, headers, limit=-1)
    assert negative.value.code == "INVALID_ARGUMENT"
    assert negative.value.violations == [
        ("limit", "must not be negative (0 means the default of 50; above 200 means 200), got -1")
    ]


async def test_bad_time_window_names_until(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    with pytest.raises(ApiError) as err:
        await _audit(
            transport,
            await tokens.headers(tenant, OPERATE),
            since=_timestamp(now),
            until=_timestamp(now - timedelta(seconds=1)),
        )
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [("until", "must be after since")]
    assert err.value.http_status in (None, 400)


async def test_a_tenant_never_sees_another_tenants_entries(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, OPERATE)
    mine = await _sources(transport, tenant, token, operator_reason="mine").register_source(
        "private", "manual"
    )
    other = f"{tenant}-b"
    resource = f"sources/{mine.source_id}"
    theirs = await tokens.headers(other, OPERATE)
    assert (await _audit(transport, theirs)).items == []
    assert (await _audit(transport, theirs, resource=resource)).items == []
    mine_page = await _audit(transport, await tokens.headers(tenant, OPERATE), resource=resource)
    assert [item.tenant_id for item in mine_page.items] == [tenant]


async def test_listing_needs_orch_operate(
    transport: Transport, tokens: TokenFactory, tenant: str
) -> None:
    with pytest.raises(ApiError) as err:
        await _audit(transport, await tokens.headers(tenant, ("orch:read",)))
    assert err.value.code == "PERMISSION_DENIED"
    assert err.value.http_status in (None, 403)


async def test_rest_document_cache_headers_and_legacy_prefix(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await tokens.headers(tenant, OPERATE)
    registered = await http.post(
        "/jobengine/sources",
        json={"name": "rest-audited", "sourceType": "webhook"},
        headers={**headers, "X-Stella-Operator-Reason": "rest", "X-Stella-Trace-Id": "tr-rest"},
    )
    assert registered.status_code == 201, registered.text
    source_id = registered.json()["sourceId"]

    response = await http.get("/jobengine/audit", params={"traceId": "tr-rest"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == CACHE
    document = response.json()
    assert set(document) == {"items"}
    [entry] = document["items"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry.pop("createdAt"))
    entry.pop("entryId")
    assert entry == {
        "tenantId": tenant,
        "actor": await _client_id(tokens, tenant),
        "action": "sources.register",
        "resource": f"sources/{source_id}",
        "reason": "rest",
        "tokenId": _jti(await tokens.token(tenant, OPERATE)),
        "traceId": "tr-rest",
        "after": {
            "sourceId": source_id,
            "name": "rest-audited",
            "sourceType": "webhook",
            "enabled": True,
            "paused": False,
            "projectId": None,
        },
    }

    etag = response.headers["etag"]
    cached = await http.get(
        "/jobengine/audit?traceId=tr-rest", headers={**headers, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""

    legacy = await http.get("/orchestrator/audit", params={"traceId": "tr-rest"}, headers=headers)
    assert legacy.status_code == 200
    assert legacy.json() == response.json()
    assert legacy.headers["deprecation"] == "true"
    assert legacy.headers["link"] == '</jobengine/audit>; rel="successor-version"'

    window = await http.get(
        "/jobengine/audit",
        params={"since": "2026-11-22T10:00:00Z", "until": "2026-11-22T09:00:00Z"},
        headers=headers,
    )
    assert window.status_code == 400
    assert window.json()["code"] == "INVALID_ARGUMENT"
    tampered = await http.get(
        "/jobengine/audit", params={"continuationToken": "bm90LmEudG9rZW4"}, headers=headers
    )
    assert tampered.status_code == 400
    assert tampered.json()["details"][0]["reason"] == "INVALID_PAGE_TOKEN"
