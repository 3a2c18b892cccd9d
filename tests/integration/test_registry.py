"""The service registry's REST contract (seed 002, DESIGN.md §4.4, issue 12 point 4):
POST /registry/register (201 then 200, revision, audit, events), GET /registry
(keyset pages, signed tokens), and bad input named field by field with nothing written.

The registry is platform-wide and the test database is shared, so every test uses
names of its own (a fresh prefix) and lists with `namePrefix`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.storage.tables import AuditEntryRow, EventRow, RegistryServiceRow, table_of
from tests.support.auth import TokenFactory

ADMIN = ("orch:admin",)
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_services = table_of(RegistryServiceRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)


@pytest.fixture
async def admin(tokens: TokenFactory, http_base: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of an operator client holding orch:admin (no tenants)."""
    token = await tokens.token(None, ADMIN)
    headers = {"Authorization": f"Bearer {token}", "X-Stella-Operator-Reason": "registry tests"}
    async with httpx.AsyncClient(base_url=http_base, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}-"


async def _register(admin: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await admin.post("/registry/register", json=body)


async def test_register_creates_201_then_updates_200_with_the_next_revision(
    admin: httpx.AsyncClient, app: Application, prefix: str
) -> None:
    name = f"{prefix}docs"
    created = await _register(
        admin,
        {
            "name": name,
            "baseUrl": "http://docs.internal:8080/api",
            "version": "1.4.2",
            "metadata": {"team": "docs", "tags": ["a", "b"], "replicas": 3},
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    assert set(body) == {
        "name",
        "baseUrl",
        "openapiUrl",
        "version",
        "metadata",
        "revision",
        "origin",
        "createdAt",
        "updatedAt",
    }
    assert body["name"] == name
    assert body["baseUrl"] == "http://docs.internal:8080/api"
    assert body["openapiUrl"] == "http://docs.internal:8080/api/openapi.json"  # the default
    assert body["version"] == "1.4.2"
    assert body["metadata"] == {"team": "docs", "tags": ["a", "b"], "replicas": 3}
    assert body["revision"] == "1"
    assert body["origin"] == app.mesh.origin if app.mesh else False
    assert TIME.fullmatch(body["createdAt"]) and body["createdAt"] == body["updatedAt"]

    updated = await _register(
        admin, {"name": name, "baseUrl": "https://docs.internal", "openapiUrl": "/spec.json"}
    )
    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert after["revision"] == "2"
    assert after["openapiUrl"] == "https://docs.internal/spec.json"  # a path, resolved
    assert after["version"] == ""  # not sent: the update replaces the entry
    assert "metadata" not in after or after["metadata"] == {}
    assert after["createdAt"] == body["createdAt"]
    assert after["updatedAt"] > body["updatedAt"]

    same = await _register(
        admin, {"name": name, "baseUrl": "https://docs.internal", "openapiUrl": "/spec.json"}
    )
    assert same.status_code == 200
    assert same.json() == after  # nothing changed: same revision, same time

    async with app.db.read() as conn:
        row = (await conn.execute(sa.select(_services).where(_services.c.name == name))).one()
        entries = (
            await conn.execute(
                sa.select(_audit)
                .where(_audit.c.resource == f"services/{name}")
                .order_by(_audit.c.created_at)
            )
        ).all()
        events = (
            await conn.execute(
                sa.select(_events.c.type, _events.c.tenant_id)
                .where(_events.c.subject == f"services/{name}")
                .order_by(_events.c.event_id)
            )
        ).all()
    assert (row.base_url, row.openapi_url, row.revision) == (
        "https://docs.internal",
        "https://docs.internal/spec.json",
        2,
    )
    assert [(e.action, e.tenant_id, e.reason) for e in entries] == [
        ("services.register", None, "registry tests")
    ] * 3
    assert entries[0].before is None
    assert json.loads(entries[1].before)["revision"] == 1
    assert json.loads(entries[1].after)["revision"] == 2
    assert entries[2].before == entries[2].after
    assert [tuple(e) for e in events] == [("service.registered", None), ("service.updated", None)]


async def test_pages_follow_names_with_signed_tokens(admin: httpx.AsyncClient, prefix: str) -> None:
    names = [f"{prefix}{letter}" for letter in "edcba"]
    for name in names:
        assert (await _register(admin, {"name": name, "baseUrl": "http://x"})).status_code == 201
    seen: list[str] = []
    params: dict[str, str | int] = {"namePrefix": prefix, "limit": 2}
    tokens: list[str] = []
    for _ in range(3):
        page = await admin.get("/registry", params=params)
        assert page.status_code == 200, page.text
        assert page.headers["cache-control"] == "private, no-cache"
        assert re.fullmatch(r'"[0-9a-f]{40}"', page.headers["etag"])
        seen += [item["name"] for item in page.json()["items"]]
        token = page.json().get("continuationToken")
        if token is None:
            break
        tokens.append(token)
        params["continuationToken"] = token
    assert seen == sorted(names)
    assert len(tokens) == 2

    other_filter = await admin.get(
        "/registry", params={"namePrefix": prefix + "x", "continuationToken": tokens[0]}
    )
    assert other_filter.status_code == 400
    assert other_filter.json()["details"][0]["reason"] == "PAGE_TOKEN_MISMATCH"
    forged = await admin.get(
        "/registry", params={"namePrefix": prefix, "continuationToken": tokens[0][:-2] + "AA"}
    )
    assert forged.status_code == 400
    assert forged.json()["details"][0]["reason"] == "INVALID_PAGE_TOKEN"
    negative = await admin.get("/registry", params={"limit": -1})
    assert negative.status_code == 400
    assert _fields(negative) == ["limit"]


def _fields(response: httpx.Response) -> list[str]:
    for detail in response.json().get("details", []):
        if detail["@type"].endswith("BadRequest"):
            return [v["field"] for v in detail["fieldViolations"]]
    return []


def _bad_cases(port: int) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    own = f"http://127.0.0.1:{port}"
    return [
        ("no name", {"baseUrl": "http://x"}, {"name": "is required"}),
        ("bad name", {"name": "has space", "baseUrl": "http://x"}, {"name": "must be 1-64"}),
        ("no base URL", {"name": "n"}, {"baseUrl": "is required"}),
        ("ftp", {"name": "n", "baseUrl": "ftp://files"}, {"baseUrl": "must use http or https"}),
        ("relative", {"name": "n", "baseUrl": "/x"}, {"baseUrl": "must be an absolute"}),
        (
            "credentials",
            {"name": "n", "baseUrl": "http://user:hunter2@x"},
            {"baseUrl": "must not carry credentials"},
        ),
        (
            "undecodable IDNA host",  # the poll failed with idna's InvalidCodepoint
            {"name": "n", "baseUrl": "http://xn--a.com/"},
            {"baseUrl": "must have a host that is a valid internationalized domain name"},
        ),
        (
            "unencodable IDNA host",  # the poll failed with httpx's InvalidURL
            {"name": "n", "baseUrl": "http://x", "openapiUrl": "http://\U0001f4a9.example/o"},
            {"openapiUrl": "must have a host that is a valid internationalized domain name"},
        ),
        (
            "own registry",
            {"name": "n", "baseUrl": f"{own}/registry"},
            {"baseUrl": "would call themselves in a loop"},
        ),
        (
            "own poll via localhost",
            {
                "name": "n",
                "baseUrl": "http://x",
                "openapiUrl": f"http://localhost:{port}/registry/poll-openapi",
            },
            {"openapiUrl": "would call themselves in a loop"},
        ),
        *(
            (
                f"own registry spelled {host}",
                {"name": "n", "baseUrl": f"http://{host}:{port}/registry"},
                {"baseUrl": "would call themselves in a loop"},
            )
            for host in (
                "127.1",
                "0x7f.0.0.1",
                "2130706433",
                "127.0.0.1.",
                "[::ffff:127.0.0.1]",
                "LOCALHOST.",
                "127.0.0.2",
            )
        ),
        (
            "own peers, dot segments",
            {"name": "n", "baseUrl": f"{own}/a/../peers"},
            {"baseUrl": "would call themselves in a loop"},
        ),
        (
            "bad openapi URL",
            {"name": "n", "baseUrl": "http://x", "openapiUrl": "spec.json"},
            {"openapiUrl": "must be an absolute"},
        ),
        (
            "long version and big metadata",
            {
                "name": "n",
                "baseUrl": "http://x",
                "version": "v" * 65,
                "metadata": {"k": "x" * 9000},
            },
            {"version": "at most 64", "metadata": "at most 8192 bytes"},
        ),
    ]


async def test_bad_registrations_name_every_field_and_write_nothing(
    admin: httpx.AsyncClient, app: Application, prefix: str
) -> None:
    for label, body, expected in _bad_cases(app.http_port):
        if "name" in body and body["name"] == "n":
            body = {**body, "name": f"{prefix}n"}
        response = await _register(admin, body)
        assert response.status_code == 400, (label, response.text)
        payload = response.json()
        assert payload["code"] == "INVALID_ARGUMENT", label
        assert _fields(response) == list(expected), (label, payload)
        for field, words in expected.items():
            assert f"{field}: " in payload["error"] and words in payload["error"], (label, payload)
        assert "hunter2" not in response.text
    listed = await admin.get("/registry", params={"namePrefix": prefix})
    assert listed.json() == {"items": []}
    async with app.db.read() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(_audit)
                .where(_audit.c.resource == f"services/{prefix}n")
            )
        ).scalar_one()
    assert count == 0


async def test_own_openapi_document_may_be_registered(
    admin: httpx.AsyncClient, app: Application, prefix: str
) -> None:
    """Only the registry and peer endpoints loop; the server's own /openapi.json is fine."""
    own = f"http://127.0.0.1:{app.http_port}"
    response = await _register(admin, {"name": f"{prefix}self", "baseUrl": own})
    assert response.status_code == 201, response.text
    assert response.json()["openapiUrl"] == f"{own}/openapi.json"


async def test_policy_operator_scope_reason(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, prefix: str
) -> None:
    body = {"name": f"{prefix}p", "baseUrl": "http://x"}
    anonymous = await http.post("/registry/register", json=body)
    assert anonymous.status_code == 401
    reader = await tokens.token(tenant, ("orch:read",))
    refused = await http.post(
        "/registry/register",
        json=body,
        headers={"Authorization": f"Bearer {reader}", "X-Stella-Operator-Reason": "x"},
    )
    assert refused.status_code == 403
    assert refused.json()["details"][0]["reason"] == "insufficient_scope"
    bound_admin = await tokens.token(tenant, ADMIN)
    bound = await http.post(
        "/registry/register",
        json=body,
        headers={"Authorization": f"Bearer {bound_admin}", "X-Stella-Operator-Reason": "x"},
    )
    assert bound.status_code == 403
    assert bound.json()["details"][0]["reason"] == "OPERATOR_CLIENT_REQUIRED"
    admin = await tokens.token(None, ADMIN)
    unexplained = await http.post(
        "/registry/register", json=body, headers={"Authorization": f"Bearer {admin}"}
    )
    assert unexplained.status_code == 400
    assert _fields(unexplained) == ["X-Stella-Operator-Reason"]
    # Platform-wide: the tenant header is neither needed nor read.
    listed = await http.get(
        "/registry", params={"namePrefix": prefix}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert listed.status_code == 200
    assert listed.json() == {"items": []}


def _entry(name: str, revision: int, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "baseUrl": "http://replicated.internal",
        "openapiUrl": "http://replicated.internal/openapi.json",
        "revision": str(revision),
        "origin": "peer-x",
        "createdAt": "2026-11-01T00:00:00Z",
        "updatedAt": when,
        **extra,
    }


async def test_replicated_entries_apply_by_last_writer_wins_and_idempotently(
    admin: httpx.AsyncClient, prefix: str
) -> None:
    name = f"{prefix}r"
    first = {"origin": "peer-x", "services": [_entry(name, 2, "2026-11-02T00:00:00Z")]}
    applied = await admin.post("/registry/replicate", json=first)
    assert applied.status_code == 200, applied.text
    assert applied.json()["accepted"] == 1
    again = await admin.post("/registry/replicate", json=first)
    assert again.json()["accepted"] == 0
    assert again.json()["registryVersion"] == applied.json()["registryVersion"]
    older = {"origin": "peer-x", "services": [_entry(name, 1, "2026-11-30T00:00:00Z")]}
    assert (await admin.post("/registry/replicate", json=older)).json()["accepted"] == 0
    [stored] = (await admin.get("/registry", params={"namePrefix": prefix})).json()["items"]
    assert stored == {**_entry(name, 2, "2026-11-02T00:00:00Z"), "version": "", "metadata": {}}
    # A local change after seeing it takes the next revision and this server's origin.
    changed = await _register(admin, {"name": name, "baseUrl": "http://local.internal"})
    assert changed.status_code == 200
    assert (changed.json()["revision"], changed.json()["origin"]) != ("2", "peer-x")
    assert changed.json()["revision"] == "3"


async def test_bad_replicated_entries_are_named_and_nothing_is_applied(
    admin: httpx.AsyncClient, prefix: str
) -> None:
    when = "2026-11-02T00:00:00Z"
    body = {
        "services": [
            _entry(f"{prefix}ok", 1, when),
            _entry(f"{prefix}zero", 0, when),
            _entry(f"{prefix}ftp", 1, when, baseUrl="ftp://x"),
            _entry(f"{prefix}ok", 1, when),
        ]
    }
    response = await admin.post("/registry/replicate", json=body)
    assert response.status_code == 400
    assert _fields(response) == [
        "origin",
        "services[1].revision",
        "services[2].baseUrl",
        "services[3].name",
    ]
    listed = await admin.get("/registry", params={"namePrefix": prefix})
    assert listed.json() == {"items": []}
