"""Seed 003's E2E test plan ("Orchestrator Admin Quota Controls (orch:quota,
orch:backfill)"), one test per bullet, named after it (issue 10 point 6), over HTTP with
real tokens from the token endpoint; SQLite and PostgreSQL.

The seed names StellaOps' classes; here they are: QuotaEndpoints -> QuotasService
(/jobengine/quotas), BackfillManager -> BackfillsService (/jobengine/backfills),
DuplicateSuppressor and EventTimeWindow -> the overlap suppression of
server/domain/backfills.py, AuditEntry -> the audit trail (/jobengine/audit),
TenantResolver -> the tenancy interceptor (X-Stella-Tenant).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from server.app import Application
from tests.support.auth import TokenFactory, token_form
from tests.support.clock import TestClock

QUOTA_REASON, QUOTA_TICKET = "raise the ingest cap", "CAP-42"
BACKFILL_REASON, BACKFILL_TICKET = "re-run the outage window", "INC-7"


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def _quota_headers(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    found = await tokens.headers(
        tenant,
        ("orch:read", "orch:operate", "orch:quota"),
        quota_reason=QUOTA_REASON,
        quota_ticket=QUOTA_TICKET,
    )
    return {**found, "X-Stella-Operator-Reason": "capacity review"}


async def _backfill_headers(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    found = await tokens.headers(
        tenant,
        ("orch:read", "orch:operate", "orch:backfill"),
        backfill_reason=BACKFILL_REASON,
        backfill_ticket=BACKFILL_TICKET,
    )
    return {**found, "X-Stella-Operator-Reason": "outage follow-up"}


async def _quota(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await http.post("/jobengine/quotas", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _adjust(
    http: httpx.AsyncClient, headers: dict[str, str], quota: dict[str, Any], **limits: Any
) -> httpx.Response:
    return await http.put(
        f"/jobengine/quotas/{quota['quotaId']}",
        json=limits,
        headers={**headers, "If-Match": f'"{quota["etag"]}"'},
    )


async def _audit(
    http: httpx.AsyncClient, headers: dict[str, str], action: str
) -> list[dict[str, Any]]:
    response = await http.get(f"/jobengine/audit?action={action}", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _window(clock: TestClock) -> dict[str, str]:
    hour = datetime.fromtimestamp(clock.wall(), UTC).replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(hours=6)
    return {"windowStart": stamp(start), "windowEnd": stamp(start + timedelta(hours=3))}


async def test_request_a_quota_adjustment_with_quota_reason_and_ticket_is_applied_and_audited(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await _quota_headers(tokens, tenant)
    quota = await _quota(http, headers, jobType="ingest", maxActive=2, burst=1)
    response = await _adjust(http, headers, quota, maxActive=8, maxPerHour=600, burst=4)
    assert response.status_code == 200, response.text
    assert (response.json()["maxActive"], response.json()["maxPerHour"]) == (8, 600)
    [entry] = await _audit(http, headers, "quotas.update")
    assert entry["resource"] == f"quotas/{quota['quotaId']}"
    assert (entry["quotaReason"], entry["quotaTicket"]) == (QUOTA_REASON, QUOTA_TICKET)
    assert (entry["before"]["maxActive"], entry["after"]["maxActive"]) == (2, 8)


async def test_a_quota_adjustment_without_quota_reason_is_rejected_with_400(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    created = await tokens.client(tenant, ("orch:read", "orch:quota"))
    response = await http.post(
        "/oauth/token", data=token_form(created, scope="orch:read orch:quota")
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "quota_reason: is required when requesting orch:quota",
    }
    # And a token without orch:quota cannot adjust a quota at all.
    quota = await _quota(http, await _quota_headers(tokens, tenant), jobType="x", burst=1)
    plain = {**await tokens.headers(tenant), "X-Stella-Operator-Reason": "no justification"}
    refused = await _adjust(http, plain, quota, burst=2)
    assert refused.status_code == 403


async def test_request_a_backfill_with_backfill_reason_and_verify_it_is_initiated(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, clock: TestClock
) -> None:
    headers = await _backfill_headers(tokens, tenant)
    response = await http.post(
        "/jobengine/backfills", json={"jobType": "reindex", **_window(clock)}, headers=headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["reason"], body["ticket"]) == (
        "active",
        BACKFILL_REASON,
        BACKFILL_TICKET,
    )
    assert (body["progress"]["created"], body["progress"]["queued"]) == (3, 3)
    jobs = await http.get(f"/jobengine/jobs?sourceId={body['sourceId']}", headers=headers)
    assert len(jobs.json()["items"]) == 3
    missing = await http.post(
        "/oauth/token",
        data=token_form(await tokens.client(tenant, ("orch:backfill",)), scope="orch:backfill"),
    )
    assert missing.status_code == 400
    assert missing.json()["error_description"] == (
        "backfill_reason: is required when requesting orch:backfill"
    )


async def test_submit_a_duplicate_backfill_within_the_event_time_window_and_verify_it_is_rejected(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, clock: TestClock
) -> None:
    headers = await _backfill_headers(tokens, tenant)
    window = _window(clock)
    first = await http.post(
        "/jobengine/backfills", json={"jobType": "reindex", **window}, headers=headers
    )
    assert first.status_code == 201
    for prefix in ("/jobengine", "/orchestrator"):
        duplicate = await http.post(
            f"{prefix}/backfills", json={"jobType": "reindex", **window}, headers=headers
        )
        assert duplicate.status_code == 409
        assert duplicate.json()["code"] == "ALREADY_EXISTS"
        assert first.json()["backfillId"] in duplicate.json()["error"]
    listed = await http.get("/jobengine/backfills", headers=headers)
    assert [b["backfillId"] for b in listed.json()["items"]] == [first.json()["backfillId"]]


async def test_verify_the_audit_trail_captures_reason_and_ticket(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, clock: TestClock
) -> None:
    quota_headers = await _quota_headers(tokens, tenant)
    quota = await _quota(http, quota_headers, jobType="ingest", burst=1)
    assert (await _adjust(http, quota_headers, quota, burst=3)).status_code == 200
    backfill_headers = await _backfill_headers(tokens, tenant)
    created = await http.post(
        "/jobengine/backfills",
        json={"jobType": "reindex", **_window(clock)},
        headers={**backfill_headers, "X-Stella-Operator-Ticket": "OPS-5"},
    )
    assert created.status_code == 201
    [adjusted] = await _audit(http, quota_headers, "quotas.update")
    assert (adjusted["reason"], adjusted["quotaReason"], adjusted["quotaTicket"]) == (
        "capacity review",
        QUOTA_REASON,
        QUOTA_TICKET,
    )
    [backfilled] = await _audit(http, quota_headers, "backfills.create")
    assert backfilled["resource"] == f"backfills/{created.json()['backfillId']}"
    assert (
        backfilled["reason"],
        backfilled["ticket"],
        backfilled["backfillReason"],
        backfilled["backfillTicket"],
    ) == ("outage follow-up", "OPS-5", BACKFILL_REASON, BACKFILL_TICKET)


async def test_query_current_quota_usage_and_verify_limits_and_usage_are_returned(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await _quota_headers(tokens, tenant)
    quota = await _quota(http, headers, jobType="ingest", maxActive=5, maxPerHour=100, burst=2)
    got = await http.get(f"/jobengine/quotas/{quota['quotaId']}", headers=headers)
    assert got.status_code == 200
    assert (got.json()["maxActive"], got.json()["maxPerHour"], got.json()["burst"]) == (5, 100, 2)
    assert got.json()["usage"] == {"active": 0, "tokens": 2.0, "lastHour": 0}
    summary = await http.get("/jobengine/quotas/summary", headers=headers)
    assert summary.status_code == 200
    [line] = summary.json()["quotas"]
    assert (line["jobType"], line["maxActive"], line["active"], line["maxPerHour"]) == (
        "ingest",
        5,
        0,
        100,
    )


async def test_adjust_quota_beyond_the_maximum_limit_and_verify_it_is_rejected_by_policy(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    headers = await _quota_headers(tokens, tenant)
    quota = await _quota(http, headers, jobType="ingest", maxActive=2, burst=1)
    response = await _adjust(http, headers, quota, maxActive=20_000, burst=1)
    assert response.status_code == 400
    assert response.json()["error"] == (
        "maxActive: must be at most 10000 (the policy maximum), got 20000"
    )
    unchanged = await http.get(f"/jobengine/quotas/{quota['quotaId']}", headers=headers)
    assert unchanged.json()["maxActive"] == 2


async def test_verify_tenant_scoping_adjusting_tenant_a_leaves_tenant_b_unchanged(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, clock: TestClock
) -> None:
    other = f"{tenant}-b"
    headers_a = await _quota_headers(tokens, tenant)
    headers_b = await _quota_headers(tokens, other)
    quota_a = await _quota(http, headers_a, jobType="ingest", maxActive=2, burst=1)
    quota_b = await _quota(http, headers_b, jobType="ingest", maxActive=2, burst=1)
    assert (await _adjust(http, headers_a, quota_a, maxActive=9, burst=1)).status_code == 200
    seen_b = await http.get(f"/jobengine/quotas/{quota_b['quotaId']}", headers=headers_b)
    assert seen_b.json() == quota_b
    foreign = await http.get(f"/jobengine/quotas/{quota_a['quotaId']}", headers=headers_b)
    assert foreign.status_code == 404
    # Backfills too: tenant A's backfill is neither seen nor a duplicate for tenant B.
    window = _window(clock)
    backfill_a = await http.post(
        "/jobengine/backfills",
        json={"jobType": "reindex", **window},
        headers=await _backfill_headers(tokens, tenant),
    )
    headers_bb = await _backfill_headers(tokens, other)
    hidden = await http.get(
        f"/jobengine/backfills/{backfill_a.json()['backfillId']}", headers=headers_bb
    )
    assert hidden.status_code == 404
    backfill_b = await http.post(
        "/jobengine/backfills", json={"jobType": "reindex", **window}, headers=headers_bb
    )
    assert backfill_b.status_code == 201
    assert backfill_b.json()["progress"]["created"] == 3
