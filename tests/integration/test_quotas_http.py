"""Quotas over HTTP (DESIGN §4.1): statuses, bodies and headers on both prefixes, the
AIP-154 etag as ETag and If-Match (412 when stale), 304 on If-None-Match only while
the representation (usage included) is the same, 204 on delete, bad input as 400
naming the field; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.storage.tables import AuditEntryRow, QuotaRow, table_of
from tests.support.auth import TokenFactory

GET_CACHE = "private, max-age=60, stale-if-error=300"
PREFIXES = ("/jobengine", "/orchestrator")
_quotas = table_of(QuotaRow)
_audit = table_of(AuditEntryRow)


@pytest.fixture
async def headers(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    found = await tokens.headers(
        tenant, ("orch:quota",), quota_reason="capacity review", quota_ticket="CAP-1"
    )
    return {**found, "X-Stella-Operator-Reason": "http test"}


def _tag(version: int, active: int, tokens: float, last_hour: int) -> str:
    """A quota's etag as the server derives it: `v{version}-` and the first 8 hex
    digits of SHA-256 over "active:tokens:lastHour" (tokens as Python's repr)."""
    usage = f"{active}:{tokens!r}:{last_hour}".encode()
    return f"v{version}-{hashlib.sha256(usage).hexdigest()[:8]}"


def _legacy(prefix: str, response: httpx.Response, successor: str) -> None:
    """The legacy twin's deprecation headers, and none on the canonical prefix."""
    if prefix == "/orchestrator":
        assert response.headers["Deprecation"] == "true"
        assert response.headers["Link"] == f'<{successor}>; rel="successor-version"'
    else:
        assert "Deprecation" not in response.headers
        assert "Link" not in response.headers


async def _create(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    response = await http.post(f"{prefix or '/jobengine'}/quotas", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _count(app: Application, table: sa.Table, tenant: str) -> int:
    async with app.db.read() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id == tenant)
        return int((await conn.execute(query)).scalar_one())


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_create_answers_201_with_the_quota_and_its_etag(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    tokens: TokenFactory,
    tenant: str,
    prefix: str,
) -> None:
    response = await http.post(
        f"{prefix}/quotas",
        json={"jobType": "scan", "maxActive": 3, "burst": 2, "refillPerSecond": 1.5},
        headers=headers,
    )
    assert response.status_code == 201
    assert response.headers["ETag"] == f'"{_tag(1, 0, 2.0, 0)}"'
    assert response.headers["Cache-Control"] == "no-store"
    _legacy(prefix, response, "/jobengine/quotas")
    body = response.json()
    client_id = (await tokens.client(tenant, ("orch:quota",))).client.client_id
    assert body == {
        "quotaId": body["quotaId"],
        "jobType": "scan",
        "maxActive": 3,
        "maxPerHour": 0,
        "burst": 2,
        "refillPerSecond": 1.5,
        "paused": False,
        "usage": {"active": 0, "tokens": 2.0, "lastHour": 0},
        "createdAt": body["createdAt"],
        "updatedAt": body["createdAt"],
        "updatedBy": client_id,
        "etag": _tag(1, 0, 2.0, 0),
    }
    assert uuid.UUID(body["quotaId"])
    assert body["createdAt"].endswith("Z")


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_get_carries_the_etag_and_answers_304_when_it_matches(
    http: httpx.AsyncClient, headers: dict[str, str], prefix: str
) -> None:
    created = await _create(http, headers, {"jobType": "cached", "burst": 1})
    path = f"{prefix}/quotas/{created['quotaId']}"
    response = await http.get(path, headers=headers)
    assert response.status_code == 200
    assert response.json() == created
    tag = f'"{_tag(1, 0, 1.0, 0)}"'
    assert response.headers["ETag"] == tag
    assert response.headers["Cache-Control"] == GET_CACHE
    _legacy(prefix, response, f"/jobengine/quotas/{created['quotaId']}")

    unchanged = await http.get(path, headers={**headers, "If-None-Match": tag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == tag
    changed = await http.get(path, headers={**headers, "If-None-Match": '"v1"'})
    assert changed.status_code == 200


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_put_is_conditional_on_if_match(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, prefix: str
) -> None:
    created = await _create(http, headers, {"jobType": "tuned", "maxActive": 1, "burst": 1})
    path = f"{prefix}/quotas/{created['quotaId']}"
    update = {"maxActive": 4, "maxPerHour": 50, "burst": 3, "refillPerSecond": 0.5}

    response = await http.put(path, json=update, headers={**headers, "If-Match": '"v1"'})
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == f'"{response.json()["etag"]}"'
    assert response.json()["etag"].startswith("v2-")
    assert response.headers["Cache-Control"] == "no-store"
    _legacy(prefix, response, f"/jobengine/quotas/{created['quotaId']}")
    body = response.json()
    assert {k: body[k] for k in (*update, "jobType")} == {**update, "jobType": "tuned"}

    stale = await http.put(path, json={"burst": 9}, headers={**headers, "If-Match": '"v1"'})
    assert stale.status_code == 412
    assert stale.json()["code"] == "ABORTED"
    assert stale.json()["error"] == (
        f"quota {created['quotaId']!r} changed since etag 'v1' was read (its settings are now"
        " at 'v2'); read it again and retry"
    )
    # The body's etag and If-Match must agree; the body's alone is a condition too.
    disagree = await http.put(
        path, json={"burst": 9, "etag": "v2"}, headers={**headers, "If-Match": '"v1"'}
    )
    assert disagree.status_code == 400
    in_body = await http.put(path, json={"burst": 9, "etag": "v1"}, headers=headers)
    assert in_body.status_code == 412
    weak = await http.put(path, json={"burst": 9}, headers={**headers, "If-Match": 'W/"v2"'})
    assert weak.status_code == 412
    # No precondition: an unconditional replace (If-Match is optional here).
    plain = await http.put(path, json={"burst": 5}, headers=headers)
    assert plain.status_code == 200
    assert (plain.json()["burst"], plain.json()["maxActive"]) == (5, 0)
    assert plain.json()["etag"].startswith("v3-")

    async with app.db.read() as conn:
        row = (
            await conn.execute(sa.select(_quotas).where(_quotas.c.quota_id == created["quotaId"]))
        ).one()
    assert (row.burst, row.max_active, row.version) == (5, 0, 3)
    assert await _count(app, _audit, tenant) == 3  # create and the two updates


async def test_delete_answers_204_and_412_when_stale(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str
) -> None:
    created = await _create(http, headers, {"jobType": "doomed", "burst": 1})
    path = f"/orchestrator/quotas/{created['quotaId']}"
    stale = await http.delete(path, headers={**headers, "If-Match": '"v9"'})
    assert stale.status_code == 412
    assert stale.json()["code"] == "ABORTED"
    stale_query = await http.delete(path, params={"etag": "v9"}, headers=headers)
    assert stale_query.status_code == 412  # a DELETE has no body: the etag as a query
    gone = await http.delete(path, params={"etag": "v1"}, headers=headers)
    assert gone.status_code == 204
    assert gone.content == b""
    assert gone.headers["Cache-Control"] == "no-store"
    _legacy("/orchestrator", gone, f"/jobengine/quotas/{created['quotaId']}")
    missing = await http.get(f"/jobengine/quotas/{created['quotaId']}", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    # `If-Match: *` on a quota that is no more: 404 as without it (RFC 9110 §13.2.1).
    star = await http.delete(path, headers={**headers, "If-Match": "*"})
    assert star.status_code == 404
    assert star.json()["code"] == "NOT_FOUND"
    assert await _count(app, _quotas, tenant) == 0
    assert await _count(app, _audit, tenant) == 2


async def test_pause_and_resume_over_http(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    created = await _create(http, headers, {"jobType": "paws", "burst": 1})
    base = f"/jobengine/quotas/{created['quotaId']}"
    paused = await http.post(f"{base}/pause", json={"reason": "upstream down"}, headers=headers)
    assert paused.status_code == 200
    assert paused.headers["ETag"] == f'"{_tag(2, 0, 1.0, 0)}"'
    assert (paused.json()["paused"], paused.json()["pauseReason"]) == (True, "upstream down")
    by_header = await http.post(f"/orchestrator/quotas/{created['quotaId']}/pause", headers=headers)
    assert by_header.status_code == 200
    assert by_header.json()["pauseReason"] == "http test"
    resumed = await http.post(f"{base}/resume", headers=headers)
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert "pauseReason" not in resumed.json()
    listed = await http.get("/jobengine/quotas", params={"paused": "true"}, headers=headers)
    assert listed.json() == {"items": []}


async def test_list_envelope_pages_and_conditional_get(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    ids = {}
    for job_type in ("c-type", "a-type", "b-type"):
        ids[job_type] = (await _create(http, headers, {"jobType": job_type, "burst": 1}))["quotaId"]
    first = await http.get("/jobengine/quotas", params={"limit": 2}, headers=headers)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == GET_CACHE
    page = first.json()
    assert [q["jobType"] for q in page["items"]] == ["a-type", "b-type"]
    assert set(page) == {"items", "continuationToken"}
    etag = first.headers["ETag"]
    again = await http.get(
        "/jobengine/quotas", params={"limit": 2}, headers={**headers, "If-None-Match": etag}
    )
    assert again.status_code == 304
    assert again.content == b""

    second = await http.get(
        "/orchestrator/quotas",
        params={"limit": 2, "continuationToken": page["continuationToken"]},
        headers=headers,
    )
    assert second.status_code == 200
    assert second.json() == {"items": [second.json()["items"][0]]}
    assert second.json()["items"][0]["quotaId"] == ids["c-type"]
    _legacy("/orchestrator", second, "/jobengine/quotas")

    cases: tuple[tuple[dict[str, str | int], str, str], ...] = (
        (
            {"limit": 2, "continuationToken": "forged.token"},
            "continuationToken",
            "INVALID_PAGE_TOKEN",
        ),
        (
            {"limit": 2, "paused": "false", "continuationToken": page["continuationToken"]},
            "continuationToken",
            "PAGE_TOKEN_MISMATCH",
        ),
        ({"limit": -5}, "limit", "INVALID_ARGUMENT"),
        ({"jobType": "Upper"}, "jobType", "INVALID_ARGUMENT"),
    )
    for params, field, reason in cases:
        bad = await http.get("/jobengine/quotas", params=params, headers=headers)
        assert bad.status_code == 400, params
        details = bad.json()["details"]
        assert details[0]["reason"] == reason
        assert [v["field"] for v in details[1]["fieldViolations"]] == [field]


async def test_summary_over_http(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    created = await _create(http, headers, {"jobType": "sum", "maxActive": 2, "burst": 4})
    for prefix in PREFIXES:
        response = await http.get(f"{prefix}/quotas/summary", headers=headers)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == GET_CACHE
        assert response.headers["ETag"].startswith('"')
        _legacy(prefix, response, "/jobengine/quotas/summary")
        body = response.json()
        assert body["quotas"] == [
            {
                "quotaId": created["quotaId"],
                "jobType": "sum",
                "paused": False,
                "active": 0,
                "maxActive": 2,
                "tokens": 4.0,
                "burst": 4,
                "lastHour": 0,
                "maxPerHour": 0,
                "throttledJobs": "0",  # int64: a JSON string (proto3 JSON mapping)
                "backpressure": False,
            }
        ]
        assert body["totals"] == {
            "quotas": 1,
            "paused": 0,
            "backpressured": 0,
            "active": "0",
            "lastHour": "0",
            "throttledJobs": "0",
        }
        assert body["generatedAt"].endswith("Z")


async def test_bad_values_are_400_naming_the_field_and_write_nothing(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str
) -> None:
    response = await http.post(
        "/jobengine/quotas",
        json={"jobType": "big", "maxActive": 20_000, "burst": 0, "refillPerSecond": -1},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "maxActive: must be at most 10000 (the policy maximum), got 20000; "
        "burst: must be at least 1, got 0; refillPerSecond: must not be negative, got -1",
        "code": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "INVALID_ARGUMENT",
                "domain": "orchestrator.stella-ops.org",
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {
                        "field": "maxActive",
                        "description": "must be at most 10000 (the policy maximum), got 20000",
                    },
                    {"field": "burst", "description": "must be at least 1, got 0"},
                    {"field": "refillPerSecond", "description": "must not be negative, got -1"},
                ],
            },
        ],
    }
    duplicate = {"jobType": "twice", "burst": 1}
    await _create(http, headers, duplicate)
    again = await http.post("/jobengine/quotas", json=duplicate, headers=headers)
    assert again.status_code == 409
    assert again.json()["details"][0]["metadata"] == {"jobType": "twice"}
    no_reason = {k: v for k, v in headers.items() if k != "X-Stella-Operator-Reason"}
    refused = await http.post(
        "/jobengine/quotas", json={"jobType": "x", "burst": 1}, headers=no_reason
    )
    assert refused.status_code == 400
    assert await _count(app, _quotas, tenant) == 1
    assert await _count(app, _audit, tenant) == 1


async def test_another_tenants_quota_is_404_over_http(
    http: httpx.AsyncClient, headers: dict[str, str], tokens: TokenFactory
) -> None:
    created = await _create(http, headers, {"jobType": "mine", "burst": 1})
    other = f"o-{uuid.uuid4().hex[:8]}"
    stranger = {
        **(await tokens.headers(other, ("orch:quota",), quota_reason="probe")),
        "X-Stella-Operator-Reason": "probe",
    }
    path = f"/jobengine/quotas/{created['quotaId']}"
    for method, suffix, body in (
        ("GET", "", None),
        ("PUT", "", {"burst": 2}),
        ("DELETE", "", None),
        ("POST", "/pause", {}),
        ("POST", "/resume", {}),
    ):
        response = await http.request(method, path + suffix, json=body, headers=stranger)
        assert response.status_code == 404, (method, suffix)
        assert response.json()["details"][0]["reason"] == "QUOTA_NOT_FOUND"
    # Presenting the tenant's own header with another tenant's token is refused outright.
    crossed = {**stranger, "X-Stella-Tenant": headers["X-Stella-Tenant"]}
    assert (await http.get(path, headers=crossed)).status_code == 403
    assert (await http.get(path, headers=headers)).json() == created


async def test_usage_moves_the_etag_but_is_no_conflict_for_an_update(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application
) -> None:
    """The representation carries live usage, so its strong ETag changes with it (RFC
    9110 §8.8.1): a revalidating GET gets 200 with the new usage, never a 304 for the
    old. An update conditional on the tag read before usage moved still applies:
    what it guards is the settings."""
    created = await _create(http, headers, {"jobType": "moving", "burst": 3})
    path = f"/jobengine/quotas/{created['quotaId']}"
    first = await http.get(path, headers=headers)
    assert first.headers["ETag"] == f'"{_tag(1, 0, 3.0, 0)}"'
    async with app.db.engine.begin() as conn:  # two slots held, as two leases would
        await conn.execute(
            sa.update(_quotas).where(_quotas.c.quota_id == created["quotaId"]).values(active=2)
        )
    moved = await http.get(path, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert moved.status_code == 200
    assert moved.json()["usage"] == {"active": 2, "tokens": 3.0, "lastHour": 0}
    assert moved.headers["ETag"] == f'"{_tag(1, 2, 3.0, 0)}"'
    assert moved.json()["etag"] == _tag(1, 2, 3.0, 0)

    updated = await http.put(
        path, json={"burst": 5}, headers={**headers, "If-Match": first.headers["ETag"]}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["burst"] == 5
    usage = updated.json()["usage"]
    assert usage["active"] == 2
    assert updated.json()["etag"] == _tag(2, 2, usage["tokens"], 0)
    stale = await http.put(
        path, json={"burst": 6}, headers={**headers, "If-Match": moved.headers["ETag"]}
    )
    assert stale.status_code == 412


async def test_pause_and_resume_are_conditional_on_if_match_or_the_body_etag(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str
) -> None:
    """Pause and resume change the quota like an update does, so they honour If-Match
    (RFC 9110 §13.1.1: an origin server evaluates it) and the body's etag: a stale
    or weak tag is 412 and changes nothing (critic finding: both were ignored)."""
    created = await _create(http, headers, {"jobType": "gated", "burst": 1})
    base = f"/jobengine/quotas/{created['quotaId']}"
    updated = await http.put(base, json={"burst": 2}, headers=headers)
    assert updated.json()["etag"].startswith("v2-")

    stale = await http.post(
        f"{base}/pause",
        json={"reason": "maintenance"},
        headers={**headers, "If-Match": f'"{created["etag"]}"'},
    )
    assert stale.status_code == 412
    assert stale.json()["code"] == "ABORTED"
    weak = await http.post(
        f"{base}/pause", json={}, headers={**headers, "If-Match": f'W/"{updated.json()["etag"]}"'}
    )
    assert weak.status_code == 412
    in_body = await http.post(f"{base}/pause", json={"etag": "v1"}, headers=headers)
    assert in_body.status_code == 412
    unchanged = await http.get(base, headers=headers)
    assert (unchanged.json()["paused"], unchanged.json()["etag"]) == (False, updated.json()["etag"])
    assert await _count(app, _audit, tenant) == 2  # create and update: no refused call

    paused = await http.post(
        f"{base}/pause",
        json={"reason": "maintenance"},
        headers={**headers, "If-Match": f'"{updated.json()["etag"]}"'},
    )
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["pauseReason"]) == (True, "maintenance")
    stale_resume = await http.post(
        f"{base}/resume", json={"etag": updated.json()["etag"]}, headers=headers
    )
    assert stale_resume.status_code == 412
    resumed = await http.post(
        f"{base}/resume", json={"etag": paused.json()["etag"]}, headers=headers
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    assert resumed.json()["etag"].startswith("v4-")


async def test_a_pause_reason_with_a_control_character_is_400_and_pauses_nothing(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str
) -> None:
    """A NUL in the reason reached PostgreSQL, which refuses it in text: 500 INTERNAL
    (schemathesis, a form body `reason=%00...`). Now 400 naming `reason`, as for any
    one-line text, in JSON and form bodies alike; the quota stays active, unaudited."""
    created = await _create(http, headers, {"jobType": "nul", "burst": 1})
    path = f"/jobengine/quotas/{created['quotaId']}/pause"
    as_json = await http.post(path, json={"reason": "disk\u0000full"}, headers=headers)
    as_form = await http.post(
        path,
        content=b"reason=%00%C3%AE",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    with_newline = await http.post(path, json={"reason": "two\nlines"}, headers=headers)
    for refused in (as_json, as_form, with_newline):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "reason: must not contain control characters"
        violations = refused.json()["details"][1]["fieldViolations"]
        assert violations == [
            {"field": "reason", "description": "must not contain control characters"}
        ]
    quota = await http.get(f"/jobengine/quotas/{created['quotaId']}", headers=headers)
    assert (quota.json()["paused"], quota.json()["etag"]) == (False, created["etag"])
    assert await _count(app, _audit, tenant) == 1  # the create alone
