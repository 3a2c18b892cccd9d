"""Headers that name one thing are sent once (DESIGN.md §4.1): a repeated tenant, project,
operator reason or ticket is 400/INVALID_ARGUMENT naming the header, over gRPC (two
metadata values) and REST (two header lines) alike, never "the first one wins"."""

from __future__ import annotations

import uuid

import pytest
from google.rpc import code_pb2

from server.interceptors.audit import REASON_HEADER, TICKET_HEADER
from server.interceptors.tenancy import LEGACY_TENANT_HEADER, PROJECT_HEADER, TENANT_HEADER
from tests.integration.security.conftest import Headers, Security
from tests.integration.security.surface import Outcome, SecuredMethod, call_grpc, call_rest, secured

SOURCES = "/orchestrator.jobengine.v1.SourcesService"
LIST = secured(f"{SOURCES}/ListSources")
REGISTER = secured(f"{SOURCES}/RegisterSource")


async def _all_ways(
    security: Security, method: SecuredMethod, headers: Headers, body: object = None
) -> list[Outcome]:
    request = method.request_class()
    if body is not None:
        request = method.request_class(name=f"dup-{uuid.uuid4().hex[:8]}", source_type="webhook")
    outcomes = [await call_grpc(method, headers, channel=security.channel, request=request)]
    for binding in method.bindings:
        payload = {"name": f"dup-{uuid.uuid4().hex[:8]}", "sourceType": "webhook"}
        outcomes.append(
            await call_rest(
                binding, headers, http=security.http, body=payload if body is not None else None
            )
        )
    return outcomes


def _assert_refused(outcomes: list[Outcome], header: str) -> None:
    assert outcomes
    for outcome in outcomes:
        assert outcome.code == code_pb2.INVALID_ARGUMENT, outcome
        assert outcome.http_status in (None, 400), outcome
        assert outcome.reason == "DUPLICATE_HEADER", outcome
        assert outcome.violations == (header,), outcome
        assert outcome.message == f"{header}: send one {header} header", outcome


@pytest.mark.parametrize(
    "repeated",
    [
        [(TENANT_HEADER, "A"), (TENANT_HEADER, "other")],
        [(TENANT_HEADER, "A"), (TENANT_HEADER, "A")],
        [(LEGACY_TENANT_HEADER, "A"), (LEGACY_TENANT_HEADER, "other")],
        [(TENANT_HEADER, "A"), (PROJECT_HEADER, "p1"), (PROJECT_HEADER, "p2")],
    ],
    ids=["tenant", "tenant-same-value", "legacy-tenant", "project"],
)
async def test_a_repeated_tenancy_header_is_refused(
    security: Security, repeated: list[tuple[str, str]]
) -> None:
    token = await security.token(("orch:read",), tenant=security.tenant_a)
    headers = [("Authorization", f"Bearer {token}")] + [
        (name, security.tenant_a if value == "A" else value) for name, value in repeated
    ]
    _assert_refused(await _all_ways(security, LIST, headers), repeated[-1][0])


async def test_legacy_and_canonical_tenant_headers_that_disagree_are_refused(
    security: Security,
) -> None:
    token = await security.token(("orch:read",), tenant=security.tenant_a)
    headers = [
        ("Authorization", f"Bearer {token}"),
        (TENANT_HEADER, security.tenant_a),
        (LEGACY_TENANT_HEADER, security.tenant_b),
    ]
    for outcome in await _all_ways(security, LIST, headers):
        assert outcome.code == code_pb2.INVALID_ARGUMENT, outcome
        assert outcome.http_status in (None, 400), outcome
        assert outcome.reason == "TENANT_CONFLICT", outcome
        assert outcome.violations == (TENANT_HEADER,), outcome


@pytest.mark.parametrize("header", [REASON_HEADER, TICKET_HEADER])
async def test_a_repeated_operator_header_is_refused(security: Security, header: str) -> None:
    token = await security.token(("orch:read", "orch:operate"), tenant=security.tenant_a)
    headers = [
        ("Authorization", f"Bearer {token}"),
        (TENANT_HEADER, security.tenant_a),
        (REASON_HEADER, "first reason"),
        (header, "second value"),
    ]
    if header == TICKET_HEADER:
        headers.insert(3, (TICKET_HEADER, "T-1"))
    _assert_refused(await _all_ways(security, REGISTER, headers, body=True), header)
