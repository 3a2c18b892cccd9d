"""Tenant isolation of data (issue 4 §5, §8; DESIGN.md §4.1-4.2): a token of tenant A
never reads or changes tenant B's rows, over gRPC and REST alike, and an operator
client acts only for the tenants it was given, naming one in X-Stella-Tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.rpc import code_pb2

from orchestrator.jobengine.v1 import audit_service_pb2, sources_service_pb2
from server.interceptors.audit import REASON_HEADER
from server.interceptors.tenancy import TENANT_HEADER
from tests.integration.security.conftest import Headers, Security, is_platform
from tests.integration.security.surface import (
    SURFACE,
    Outcome,
    SecuredMethod,
    call,
    call_grpc,
    call_rest,
    secured,
)

SOURCES = "/orchestrator.jobengine.v1.SourcesService"
LIST = secured(f"{SOURCES}/ListSources")
GET = secured(f"{SOURCES}/GetSource")
REGISTER = secured(f"{SOURCES}/RegisterSource")
PAUSE = secured(f"{SOURCES}/PauseSource")
RESUME = secured(f"{SOURCES}/ResumeSource")
AUDIT = secured("/orchestrator.jobengine.v1.AuditService/ListAuditEntries")
READ_WRITE = ("orch:read", "orch:operate")


@dataclass(frozen=True, slots=True)
class Registered:
    source: dict[str, Any]
    client_id: str

    @property
    def source_id(self) -> str:
        value: str = self.source["sourceId"]
        return value


async def _register(security: Security, tenant: str) -> Registered:
    """A source registered through REST by a client bound to `tenant`."""
    token = await security.token(READ_WRITE, tenant=tenant)
    name = f"secret-{uuid.uuid4().hex[:8]}"
    response = await security.http.post(
        "/jobengine/sources",
        json={"name": name, "sourceType": "webhook"},
        headers={
            "Authorization": f"Bearer {token}",
            TENANT_HEADER: tenant,
            REASON_HEADER: "security tests",
        },
    )
    assert response.status_code == 201, response.text
    created = await security.client(READ_WRITE, tenant=tenant)
    return Registered(response.json(), created.client.client_id)


@pytest.fixture
async def b_source(security: Security) -> AsyncIterator[Registered]:
    registered = await _register(security, security.tenant_b)
    yield registered
    # Nothing A did may have changed it: read it back as B.
    after = await _get_as(security, security.tenant_b, registered.source_id)
    assert after.code == code_pb2.OK, after
    assert after.body == registered.source


async def _get_as(security: Security, tenant: str, source_id: str) -> Outcome:
    token = await security.token(READ_WRITE, tenant=tenant)
    headers = [("Authorization", f"Bearer {token}"), (TENANT_HEADER, tenant)]
    return await call_rest(
        GET.bindings[0], headers, http=security.http, path=f"/jobengine/sources/{source_id}"
    )


def _a_headers(security: Security, token: str, *, send_tenant: bool) -> Headers:
    headers = [("Authorization", f"Bearer {token}"), (REASON_HEADER, "security tests")]
    return [*headers, (TENANT_HEADER, security.tenant_a)] if send_tenant else headers


async def _all_ways(
    security: Security, method: SecuredMethod, source_id: str, headers: Headers
) -> list[Outcome]:
    """`method` on `source_id` over gRPC and every HTTP binding."""
    request = method.request_class(source_id=source_id)
    outcomes = [await call_grpc(method, headers, channel=security.channel, request=request)]
    for binding in method.bindings:
        path = binding.template.source.replace("{source_id}", source_id)
        outcomes.append(await call_rest(binding, headers, http=security.http, path=path))
    return outcomes


@pytest.mark.parametrize("method", [GET, PAUSE, RESUME], ids=lambda m: m.descriptor.name)
@pytest.mark.parametrize("send_tenant", [True, False], ids=["tenant-header", "no-header"])
async def test_another_tenants_source_is_not_found_like_a_missing_one(
    security: Security, b_source: Registered, method: SecuredMethod, send_tenant: bool
) -> None:
    """404/NOT_FOUND, indistinguishable from an id that never existed (no oracle)."""
    token = await security.token(READ_WRITE)
    headers = _a_headers(security, token, send_tenant=send_tenant)
    theirs = await _all_ways(security, method, b_source.source_id, headers)
    missing_id = str(uuid.uuid4())
    missing = await _all_ways(security, method, missing_id, headers)
    for outcome, control in zip(theirs, missing, strict=True):
        assert outcome.code == code_pb2.NOT_FOUND, outcome
        assert outcome.http_status in (None, 404), outcome
        assert (outcome.reason, outcome.http_status) == (control.reason, control.http_status)
        assert outcome.message == control.message.replace(missing_id, b_source.source_id)
        assert b_source.source["name"] not in str(outcome.body)
    assert len({outcome.reason for outcome in theirs}) == 1


async def _list_ids(security: Security, headers: Headers, source_type: str) -> list[list[str]]:
    """Every page of ListSources, over gRPC and each HTTP binding: one id list each."""
    listings: list[list[str]] = []
    request = sources_service_pb2.ListSourcesRequest(limit=200, source_type=source_type)
    ids: list[str] = []
    while True:
        outcome = await call_grpc(LIST, headers, channel=security.channel, request=request)
        assert outcome.code == code_pb2.OK, outcome
        ids += [item.source_id for item in outcome.body.items]
        if not outcome.body.HasField("continuation_token"):
            break
        request.continuation_token = outcome.body.continuation_token
    listings.append(ids)
    query = f"&sourceType={source_type}" if source_type else ""
    for binding in LIST.bindings:
        ids = []
        path = f"{binding.template.source}?limit=200{query}"
        while True:
            outcome = await call_rest(binding, headers, http=security.http, path=path)
            assert outcome.http_status == 200, outcome
            ids += [item["sourceId"] for item in outcome.body["items"]]
            token = outcome.body.get("continuationToken")
            if token is None:
                break
            path = f"{binding.template.source}?limit=200{query}&continuationToken={token}"
        listings.append(ids)
    return listings


@pytest.mark.parametrize("send_tenant", [True, False], ids=["tenant-header", "no-header"])
async def test_listings_never_contain_another_tenants_source(
    security: Security, b_source: Registered, send_tenant: bool
) -> None:
    mine = await _register(security, security.tenant_a)
    token = await security.token(READ_WRITE)
    headers = _a_headers(security, token, send_tenant=send_tenant)
    for source_type in ("", "webhook"):
        listings = await _list_ids(security, headers, source_type)
        for ids in listings:
            assert b_source.source_id not in ids
            assert mine.source_id in ids
        assert all(ids == listings[0] for ids in listings), "gRPC and REST list alike"


async def test_audit_trail_never_shows_another_tenants_entries(
    security: Security, b_source: Registered
) -> None:
    token = await security.token(READ_WRITE)
    headers = _a_headers(security, token, send_tenant=True)
    resource = f"sources/{b_source.source_id}"
    outcome = await call_grpc(
        AUDIT,
        headers,
        channel=security.channel,
        request=audit_service_pb2.ListAuditEntriesRequest(resource=resource),
    )
    assert (outcome.code, list(outcome.body.items)) == (code_pb2.OK, [])
    for binding in AUDIT.bindings:
        path = f"{binding.template.source}?resource={resource}"
        listed = await call_rest(binding, headers, http=security.http, path=path)
        assert (listed.http_status, listed.body["items"]) == (200, [])
    # B sees its one entry: the registration, by its own client.
    b_token = await security.token(READ_WRITE, tenant=security.tenant_b)
    b_headers = [("Authorization", f"Bearer {b_token}"), (TENANT_HEADER, security.tenant_b)]
    theirs = await call_rest(
        AUDIT.bindings[0],
        b_headers,
        http=security.http,
        path=f"{AUDIT.bindings[0].template.source}?resource={resource}",
    )
    assert theirs.http_status == 200
    assert [entry["actor"] for entry in theirs.body["items"]] == [b_source.client_id]


# --- operator clients -----------------------------------------------------------------------


async def _list_all_ways(security: Security, headers: Headers) -> list[Outcome]:
    outcomes = [await call_grpc(LIST, headers, channel=security.channel)]
    for binding in LIST.bindings:
        outcomes.append(await call_rest(binding, headers, http=security.http))
    return outcomes


async def test_operator_client_names_an_allowed_tenant(
    security: Security, b_source: Registered
) -> None:
    """An operator client (no bound tenant, allowed [A]) must name its tenant; it sees A's
    sources with header A, and is refused B. (A is fresh here, so its listing is known.)"""
    tenant_a = f"sec-op-{uuid.uuid4().hex[:8]}"
    mine = await _register(security, tenant_a)
    token = await security.token(("orch:read",), tenants=(tenant_a,))
    bearer = ("Authorization", f"Bearer {token}")

    for outcome in await _list_all_ways(security, [bearer]):
        assert outcome.code == code_pb2.INVALID_ARGUMENT, outcome
        assert outcome.http_status in (None, 400), outcome
        assert outcome.reason == "TENANT_REQUIRED"
        assert outcome.violations == (TENANT_HEADER,)
        assert outcome.message == f"{TENANT_HEADER}: header is required for this operation"

    for outcome in await _list_all_ways(security, [bearer, (TENANT_HEADER, tenant_a)]):
        assert outcome.code == code_pb2.OK, outcome
        assert outcome.http_status in (None, 200), outcome
        if outcome.transport == "grpc":
            ids = [item.source_id for item in outcome.body.items]
        else:
            ids = [item["sourceId"] for item in outcome.body["items"]]
        assert ids == [mine.source_id]

    for outcome in await _list_all_ways(security, [bearer, (TENANT_HEADER, security.tenant_b)]):
        assert outcome.code == code_pb2.PERMISSION_DENIED, outcome
        assert outcome.http_status in (None, 403), outcome
        assert outcome.reason == "TENANT_FORBIDDEN"
        assert b_source.source_id not in str(outcome.body)


async def test_another_tenants_continuation_token_is_refused(
    security: Security, b_source: Registered
) -> None:
    """B's page token, replayed by A, is bound to B: 400 PAGE_TOKEN_MISMATCH, not a page."""
    second = await _register(security, security.tenant_b)
    b_token = await security.token(READ_WRITE, tenant=security.tenant_b)
    page = await security.http.get(
        "/jobengine/sources?limit=1",
        headers={"Authorization": f"Bearer {b_token}", TENANT_HEADER: security.tenant_b},
    )
    assert page.status_code == 200, page.text
    continuation = page.json()["continuationToken"]

    token = await security.token(READ_WRITE)
    headers = _a_headers(security, token, send_tenant=True)
    request = sources_service_pb2.ListSourcesRequest(limit=1, continuation_token=continuation)
    outcomes = [await call_grpc(LIST, headers, channel=security.channel, request=request)]
    for binding in LIST.bindings:
        path = f"{binding.template.source}?limit=1&continuationToken={continuation}"
        outcomes.append(await call_rest(binding, headers, http=security.http, path=path))
    for outcome in outcomes:
        assert outcome.code == code_pb2.INVALID_ARGUMENT, outcome
        assert outcome.http_status in (None, 400), outcome
        assert (outcome.reason, outcome.violations) == (
            "PAGE_TOKEN_MISMATCH",
            ("continuationToken",),
        )
        for name in (b_source.source["name"], second.source["name"]):
            assert name not in str(outcome.body)


PLATFORM = [method for method in SURFACE if is_platform(method)]


@pytest.mark.parametrize("method", PLATFORM, ids=lambda m: m.name)
async def test_platform_methods_refuse_clients_bound_to_a_tenant(
    security: Security, method: SecuredMethod
) -> None:
    """Platform-level methods (TENANT_MODE_PLATFORM, issue 12 §7) need an operator client:
    a client bound to a tenant is refused 403/PERMISSION_DENIED OPERATOR_CLIENT_REQUIRED
    over gRPC and every binding, whatever scopes it holds; an operator client, of no
    tenant or of some, is let through."""
    bound = await security.method_token(method, tenant=security.tenant_a)
    headers = [*security.context_headers(method), ("Authorization", f"Bearer {bound}")]
    for target in method.targets:
        outcome = await call(target, headers, channel=security.channel, http=security.http)
        assert outcome.code == code_pb2.PERMISSION_DENIED, (target.label, outcome)
        assert outcome.http_status in (None, 403), (target.label, outcome)
        assert outcome.reason == "OPERATOR_CLIENT_REQUIRED", (target.label, outcome)
        assert outcome.message == (
            "this operation is platform level: it needs an operator client, not one bound "
            "to a tenant"
        )
    policy = method.policy
    for operator in (
        await security.method_token(method),
        await security.token(
            policy.scopes, tenants=(security.tenant_a,), permissions=policy.permissions
        ),
    ):
        headers = [*security.context_headers(method), ("Authorization", f"Bearer {operator}")]
        for target in method.targets:
            outcome = await call(target, headers, channel=security.channel, http=security.http)
            # Let through: an empty request may still be refused as bad input
            # (RegisterService needs a name), but not for who is calling.
            assert not outcome.refused_by_authentication, (target.label, outcome)


def test_the_platform_methods_are_the_ones_the_protos_say() -> None:
    """A guard against the table above going empty unnoticed."""
    assert {method.name for method in PLATFORM} >= {
        "orchestrator.mesh.v1.OpsService.GetEffectiveConfig",
        "orchestrator.mesh.v1.OpsService.GetSystemHealth",
    }
