"""The served OpenAPI documents (DESIGN.md §4.5): `/.well-known/openapi`, `/openapi.json`
and `/openapi/{api}.json`, over real HTTP on both databases, and one documented call
made the way the document says."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import httpx
import jsonschema_rs
import pytest
from google.protobuf import descriptor_pb2
from openapi_spec_validator import validate

from gateway.bindings import bindings_for
from gateway.openapi import build_document, documents_by_api
from gateway.openapi_schema import comments_from_files
from server.app import SERVICES
from server.http_surface import openapi_config

STRONG_ETAG = re.compile(r'"[0-9a-f]{40}"')


def _comments() -> dict[str, str]:
    """The proto comments, read independently of the server from the committed set."""
    data = resources.files("orchestrator").joinpath("descriptor_set.binpb").read_bytes()
    return comments_from_files(descriptor_pb2.FileDescriptorSet.FromString(data).file)


def _expected_apis() -> dict[str, dict[str, Any]]:
    return documents_by_api(bindings_for(SERVICES), comments=_comments(), config=openapi_config())


def _conforms(document: dict[str, Any], component: str, instance: object) -> None:
    """Validate `instance` against a component, resolving `$ref`s inside the document."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    jsonschema_rs.Draft202012Validator(schema).validate(instance)


async def test_discovery_lists_every_api(http: httpx.AsyncClient) -> None:
    response = await http.get("/.well-known/openapi")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    assert STRONG_ETAG.fullmatch(response.headers["etag"])
    body = response.json()
    assert body == {
        "openapi": "/openapi.json",
        "apis": [{"name": name, "url": f"/openapi/{name}.json"} for name in _expected_apis()],
    }
    assert {"name": "jobengine", "url": "/openapi/jobengine.json"} in body["apis"]


@pytest.mark.parametrize(
    "path",
    ["/openapi.json", "/openapi/jobengine.json"],
    ids=["everything", "jobengine"],
)
async def test_documents_are_valid_cacheable_and_revalidate(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    etag = response.headers["etag"]
    assert STRONG_ETAG.fullmatch(etag)
    document = response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "/jobengine/sources" in document["paths"]

    again = await http.get(path)
    assert (again.content, again.headers["etag"]) == (response.content, etag)
    cached = await http.get(path, headers={"If-None-Match": etag})
    assert (cached.status_code, cached.content) == (304, b"")
    assert cached.headers["etag"] == etag
    assert cached.headers["cache-control"] == "no-cache"

    head = await http.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == etag
    assert head.headers["content-length"] == str(len(response.content))


async def test_documents_are_what_the_generator_builds(http: httpx.AsyncClient) -> None:
    per_api = await http.get("/openapi/jobengine.json")
    assert per_api.json() == _expected_apis()["jobengine"]
    everything = await http.get("/openapi.json")
    expected = build_document(
        bindings_for(SERVICES),
        title="HTTP API",
        version="v1",
        comments=_comments(),
        config=openapi_config(),
    )
    assert everything.json()["paths"] == expected["paths"]
    assert everything.json()["components"] == expected["components"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/openapi/unknown.json", 404),
        ("GET", "/openapi.json/", 404),
        ("POST", "/openapi.json", 405),
        ("DELETE", "/.well-known/openapi", 405),
    ],
    ids=["unknown-api", "trailing-slash", "post", "delete"],
)
async def test_other_requests_fall_through_to_routing(
    http: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    """A path that is no document goes on to routing (404 here); another method on a
    document is 405 with `Allow: GET, HEAD` (RFC 9110 §15.5.6)."""
    response = await http.request(method, path)
    assert response.status_code == status
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["code"] == "UNIMPLEMENTED"
    else:
        assert response.json()["code"] == "NOT_FOUND"


async def test_a_call_made_as_documented_answers_as_documented(
    http: httpx.AsyncClient, tenant: str, access_token: str
) -> None:
    """Register with the body type documented (JSON only: the request holds a nested
    schedule, so OpenAPI offers no form), then list and read."""
    document = (await http.get("/openapi/jobengine.json")).json()
    register = document["paths"]["/jobengine/sources"]["post"]
    assert set(register["requestBody"]["content"]) == {"application/json"}
    http.headers["Authorization"] = f"Bearer {access_token}"
    headers = {"X-Stella-Tenant": tenant, "X-Stella-Operator-Reason": "openapi test"}
    fields = {"name": "documented", "sourceType": "webhook", "enabled": True}
    created = await http.post("/jobengine/sources", json=fields, headers=headers)
    assert created.status_code == 201, created.text
    _conforms(document, "Source", created.json())
    success = register["responses"]["201"]["headers"]
    assert created.headers["cache-control"] == success["Cache-Control"]["schema"]["const"]

    listed = await http.get("/jobengine/sources", headers={"X-Stella-Tenant": tenant})
    assert listed.status_code == 200
    _conforms(document, "ListSourcesResponse", listed.json())
    assert [item["name"] for item in listed.json()["items"]] == ["documented"]

    source_id = created.json()["sourceId"]
    legacy = await http.get(
        f"/orchestrator/sources/{source_id}", headers={"X-Stella-Tenant": tenant}
    )
    assert legacy.status_code == 200
    assert document["paths"]["/orchestrator/sources/{sourceId}"]["get"]["deprecated"] is True
    assert legacy.headers["deprecation"] == "true"

    missing = await http.get("/jobengine/sources/nope", headers={"X-Stella-Tenant": tenant})
    assert missing.status_code == 404
    _conforms(document, "Error", missing.json())


async def test_descriptions_come_from_the_proto_comments(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi/jobengine.json")).json()
    listing = document["paths"]["/jobengine/sources"]["get"]
    assert listing["summary"] == "Lists the tenant's sources ordered by (name, sourceId)."
    assert listing["description"].startswith(
        "Lists the tenant's sources ordered by (name, sourceId).\n\nReturns INVALID_ARGUMENT"
    )
    audit = document["paths"]["/jobengine/audit"]["get"]
    assert audit["summary"].startswith("Lists the tenant's audit entries, newest first")


async def test_header_rules_are_what_the_server_checks(
    http: httpx.AsyncClient, tenant: str, access_token: str
) -> None:
    """Issue 8 item 12: a header value the document allows is served, one it refuses is
    a 400 naming the header, at each rule's edge."""
    document = (await http.get("/openapi/jobengine.json")).json()
    register = document["paths"]["/jobengine/sources"]["post"]
    headers = {p["name"]: p for p in register["parameters"] if p["in"] == "header"}
    assert "required" not in headers["X-Stella-Tenant"]  # a bound token may omit it
    assert headers["X-Stella-Operator-Reason"]["required"] is True
    http.headers["Authorization"] = f"Bearer {access_token}"
    created = await http.post(
        "/jobengine/sources",
        json={"name": "no tenant header", "sourceType": "webhook"},
        headers={"X-Stella-Operator-Reason": "header rules"},
    )
    assert created.status_code == 201, created.text

    cases = [
        ("X-Stella-Tenant", "", 201),  # empty is none
        ("X-Stella-Tenant", tenant, 201),
        ("X-Stella-Tenant", "-starts-with-dash", 400),
        ("X-Stella-Tenant", "a" * 65, 400),
        ("X-Stella-Project", "p.1_x-y", 201),
        ("X-Stella-Project", "no spaces", 400),
        ("X-Stella-Operator-Reason", "r" * 1024, 201),
        ("X-Stella-Operator-Reason", "r" * 1025, 400),
        ("X-Stella-Operator-Ticket", "t" * 256, 201),
        ("X-Stella-Operator-Ticket", "t" * 257, 400),
    ]
    for number, (name, value, status) in enumerate(cases):
        validator = jsonschema_rs.Draft202012Validator(headers[name]["schema"])
        assert validator.is_valid(value) is (status == 201), (name, value)
        response = await http.post(
            "/jobengine/sources",
            json={"name": f"headers-{number}", "sourceType": "webhook"},
            headers={"X-Stella-Operator-Reason": "header rules", name: value},
        )
        assert response.status_code == status, (name, value, response.text)
        if status == 400:
            violations = response.json()["details"][1]["fieldViolations"]
            assert [v["field"] for v in violations] == [name]
