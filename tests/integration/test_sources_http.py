"""The REST contract of job sources (DESIGN.md §4.1): paths, headers, status codes, bodies."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.auth import TokenFactory

CACHE = "private, max-age=60, stale-if-error=300"


@pytest.fixture(autouse=True)
def _authenticated(http: httpx.AsyncClient, access_token: str) -> None:
    """Every request here carries the test tenant's token unless a test says otherwise;
    authentication itself is tested in tests/integration/security."""
    http.headers["Authorization"] = f"Bearer {access_token}"


def _headers(tenant: str, **extra: str) -> dict[str, str]:
    return {"X-Stella-Tenant": tenant, "X-Stella-Operator-Reason": "tests", **extra}


async def _register(
    http: httpx.AsyncClient, tenant: str, name: str, kind: str = "manual"
) -> dict[str, object]:
    response = await http.post(
        "/jobengine/sources", json={"name": name, "sourceType": kind}, headers=_headers(tenant)
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_created_source_answers_201_with_the_resource(
    http: httpx.AsyncClient, tenant: str
) -> None:
    response = await http.post(
        "/jobengine/sources",
        json={"name": "registry", "sourceType": "webhook", "enabled": False},
        headers=_headers(tenant),
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "sourceId",
        "name",
        "sourceType",
        "enabled",
        "paused",
        "createdAt",
        "updatedAt",
    }
    assert body["name"] == "registry"
    assert body["sourceType"] == "webhook"
    assert body["enabled"] is False
    assert body["paused"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["createdAt"])


async def test_list_envelope_cache_headers_and_etag(http: httpx.AsyncClient, tenant: str) -> None:
    await _register(http, tenant, "b")
    await _register(http, tenant, "a")
    response = await http.get("/jobengine/sources", headers={"X-Stella-Tenant": tenant})
    assert response.status_code == 200
    assert response.headers["cache-control"] == CACHE
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag)
    body = response.json()
    assert list(body) == ["items"]  # no token on the last page
    assert [item["name"] for item in body["items"]] == ["a", "b"]

    again = await http.get("/jobengine/sources", headers={"X-Stella-Tenant": tenant})
    assert again.headers["etag"] == etag
    cached = await http.get(
        "/jobengine/sources", headers={"X-Stella-Tenant": tenant, "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert cached.headers["cache-control"] == CACHE

    await _register(http, tenant, "c")
    changed = await http.get(
        "/jobengine/sources", headers={"X-Stella-Tenant": tenant, "If-None-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


async def test_get_one_source_has_etag_and_304(http: httpx.AsyncClient, tenant: str) -> None:
    created = await _register(http, tenant, "one")
    response = await http.get(
        f"/jobengine/sources/{created['sourceId']}", headers={"X-Stella-Tenant": tenant}
    )
    assert response.status_code == 200
    assert response.json() == created
    etag = response.headers["etag"]
    cached = await http.get(
        f"/jobengine/sources/{created['sourceId']}",
        headers={"X-Stella-Tenant": tenant, "If-None-Match": f'W/"zzz", {etag}'},
    )
    assert cached.status_code == 304


async def test_legacy_prefix_serves_the_same_with_deprecation_headers(
    http: httpx.AsyncClient, tenant: str
) -> None:
    created = await _register(http, tenant, "legacy")
    path = f"/orchestrator/sources/{created['sourceId']}"
    response = await http.get(path, headers={"X-StellaOps-Tenant": tenant})
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["deprecation"] == "true"
    assert (
        response.headers["link"]
        == f'</jobengine/sources/{created["sourceId"]}>; rel="successor-version"'
    )
    listing = await http.get("/orchestrator/sources", headers={"X-Stella-Tenant": tenant})
    assert listing.headers["link"] == '</jobengine/sources>; rel="successor-version"'
    canonical = await http.get("/jobengine/sources", headers={"X-Stella-Tenant": tenant})
    assert "deprecation" not in canonical.headers
    assert canonical.json() == listing.json()


async def test_trace_id_is_echoed_or_generated(http: httpx.AsyncClient, tenant: str) -> None:
    mine = await http.get(
        "/jobengine/sources", headers={"X-Stella-Tenant": tenant, "X-Stella-Trace-Id": "abc-123"}
    )
    assert mine.headers["x-stella-trace-id"] == "abc-123"
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    w3c = await http.get(
        "/jobengine/sources", headers={"X-Stella-Tenant": tenant, "traceparent": parent}
    )
    assert w3c.headers["x-stella-trace-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    fresh = await http.get("/jobengine/sources", headers={"X-Stella-Tenant": tenant})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-stella-trace-id"])
    failed = await http.get(
        "/jobengine/sources", headers={"X-Stella-Trace-Id": "err-1", "X-Stella-Tenant": "bad!"}
    )
    assert failed.status_code == 400
    assert failed.headers["x-stella-trace-id"] == "err-1"


BAD_REQUESTS = [
    pytest.param(
        "GET",
        "/jobengine/sources",
        {},
        None,
        "X-Stella-Tenant",
        "TENANT_REQUIRED",
        id="missing-tenant",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?limit=-1",
        None,
        None,
        "limit",
        "INVALID_ARGUMENT",
        id="negative-limit",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?limit=ten",
        None,
        None,
        "limit",
        "INVALID_QUERY_PARAMETER",
        id="limit-not-int",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?limit=99999999999",
        None,
        None,
        "limit",
        "INVALID_QUERY_PARAMETER",
        id="limit-overflow",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?enabled=maybe",
        None,
        None,
        "enabled",
        "INVALID_QUERY_PARAMETER",
        id="enabled-not-bool",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?sourceType=Not%20Slug",
        None,
        None,
        "sourceType",
        "INVALID_ARGUMENT",
        id="bad-source-type",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?continuationToken=garbage",
        None,
        None,
        "continuationToken",
        "INVALID_PAGE_TOKEN",
        id="garbage-token",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources?colour=red",
        None,
        None,
        "colour",
        "INVALID_QUERY_PARAMETER",
        id="unknown-param",
    ),
    pytest.param(
        "POST",
        "/jobengine/sources",
        None,
        b"{not json",
        "body",
        "INVALID_BODY",
        id="malformed-json",
    ),
    pytest.param(
        "POST",
        "/jobengine/sources",
        None,
        b'{"name": 5, "sourceType": "x"}',
        "name",
        "INVALID_BODY",
        id="wrong-type",
    ),
    pytest.param(
        "POST",
        "/jobengine/sources",
        None,
        b'{"name": "n", "sourceType": "x", "owner": 1}',
        "owner",
        "INVALID_BODY",
        id="unknown-field",
    ),
    pytest.param(
        "POST", "/jobengine/sources", None, b"[1, 2]", "body", "INVALID_BODY", id="body-not-object"
    ),
    pytest.param(
        "POST",
        "/jobengine/sources",
        None,
        b'{"sourceType": "manual"}',
        "name",
        "INVALID_ARGUMENT",
        id="missing-name",
    ),
    pytest.param(
        "POST",
        "/jobengine/sources",
        {"X-Stella-Operator-Reason": ""},
        b'{"name": "n", "sourceType": "manual"}',
        "X-Stella-Operator-Reason",
        "OPERATOR_REASON_REQUIRED",
        id="blank-reason",
    ),
    pytest.param(
        "GET",
        "/jobengine/sources",
        {"X-Stella-Tenant": "bad tenant!"},
        None,
        "X-Stella-Tenant",
        "INVALID_HEADER",
        id="malformed-tenant",
    ),
]


# The exact message of each bad request, by case id.
MESSAGES = {
    "missing-tenant": "X-Stella-Tenant: header is required for this operation",
    "negative-limit": "limit: must not be negative"
    " (0 means the default of 50; above 200 means 200), got -1",
    "limit-not-int": 'invalid parameter "limit": "ten" is not a decimal int32',
    "limit-overflow": 'invalid parameter "limit": "99999999999" is not a decimal int32; '
    "out of range",
    "enabled-not-bool": 'invalid parameter "enabled": "maybe" is not a bool (true, false, 1 or 0)',
    "bad-source-type": "sourceType: must be a lowercase slug: a letter, then up to 63 letters, "
    "digits, '.', '_' or '-', got 'Not Slug'",
    "garbage-token": "continuationToken: is not a token this server issued",
    "unknown-param": 'invalid parameter "colour": unknown field',
    "malformed-json": "malformed JSON body: expected a member name in double quotes at line 1, "
    "column 2",
    "wrong-type": 'invalid body field "name": 5 is not a string',
    "unknown-field": 'invalid body field "owner": unknown field',
    "body-not-object": "request body must be a JSON object, got an array",
    "missing-name": "name: is required",
    "blank-reason": "X-Stella-Operator-Reason: header is required for this operation and "
    "must not be blank",
    "malformed-tenant": "X-Stella-Tenant: must be 1-64 letters, digits, '.', '_' or '-', "
    "starting with a letter or digit",
}


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "field", "reason", "message"),
    [pytest.param(*case.values, MESSAGES[str(case.id)], id=case.id) for case in BAD_REQUESTS],
)
async def test_bad_input_is_400_naming_the_field(
    http: httpx.AsyncClient,
    tenant: str,
    tokens: TokenFactory,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: bytes | None,
    field: str,
    reason: str,
    message: str,
) -> None:
    sent = _headers(tenant) if headers is None else {"X-Stella-Tenant": tenant, **headers}
    if headers == {}:
        # Only an operator client must name its tenant; a bound client's is implied.
        operator = await tokens.token(None, tenants=[tenant])
        sent = {"Authorization": f"Bearer {operator}"}
    response = await http.request(
        method, path, content=body, headers={**sent, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["code"] == "INVALID_ARGUMENT"
    assert document["error"] == message
    reasons = [d.get("reason") for d in document["details"] if d["@type"].endswith("ErrorInfo")]
    assert reasons == [reason]
    violations = [
        v["field"]
        for d in document["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]
    assert violations == [field]


async def test_token_reused_with_other_filters_is_refused(
    http: httpx.AsyncClient, tenant: str, tokens: TokenFactory
) -> None:
    for name in ("a", "b", "c"):
        await _register(http, tenant, name)
    first = await http.get("/jobengine/sources?limit=1", headers={"X-Stella-Tenant": tenant})
    token = first.json()["continuationToken"]
    ok = await http.get(
        f"/jobengine/sources?limit=1&continuationToken={token}", headers={"X-Stella-Tenant": tenant}
    )
    assert [i["name"] for i in ok.json()["items"]] == ["b"]
    other_filter = await http.get(
        f"/jobengine/sources?limit=1&enabled=true&continuationToken={token}",
        headers={"X-Stella-Tenant": tenant},
    )
    assert other_filter.status_code == 400
    assert other_filter.json()["details"][0]["reason"] == "PAGE_TOKEN_MISMATCH"
    other_tenant = await http.get(
        f"/jobengine/sources?limit=1&continuationToken={token}",
        headers={
            "X-Stella-Tenant": tenant + "x",
            "Authorization": f"Bearer {await tokens.token(tenant + 'x')}",
        },
    )
    assert other_tenant.status_code == 400
    assert other_tenant.json()["details"][0]["reason"] == "PAGE_TOKEN_MISMATCH"
    body, _, signature = token.partition(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    forged = await http.get(
        f"/jobengine/sources?continuationToken={tampered}", headers={"X-Stella-Tenant": tenant}
    )
    assert forged.status_code == 400
    assert forged.json()["details"][0]["reason"] == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize(
    "source_id", ["%00", "a%0Ab", "x" * 65, "%C3%A9"], ids=["nul", "newline", "long", "non-ascii"]
)
async def test_ids_outside_the_issued_alphabet_are_not_found(
    http: httpx.AsyncClient, tenant: str, source_id: str
) -> None:
    response = await http.get(
        f"/jobengine/sources/{source_id}", headers={"X-Stella-Tenant": tenant}
    )
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


async def test_unknown_path_and_wrong_method(http: httpx.AsyncClient) -> None:
    missing = await http.get("/jobengine/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    wrong = await http.delete("/jobengine/sources")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, POST"


async def test_oversized_body_is_413(http: httpx.AsyncClient, tenant: str) -> None:
    response = await http.post(
        "/jobengine/sources",
        content=b"{" + b" " * (4 * 1024 * 1024) + b"}",
        headers=_headers(tenant),
    )
    assert response.status_code == 413
    assert response.json()["code"] == "RESOURCE_EXHAUSTED"


async def test_unsupported_content_type_is_415(http: httpx.AsyncClient, tenant: str) -> None:
    response = await http.post(
        "/jobengine/sources",
        content=b"<xml/>",
        headers={**_headers(tenant), "Content-Type": "application/xml"},
    )
    assert response.status_code == 415
