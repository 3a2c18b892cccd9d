"""The OpenAPI rules of the service registry and the dead-letter API
(server/http_surface.py) say what their domains check: a value the document's schema
takes is one the server takes, and the other way round, for the URLs, names and
filters those checks refuse with 400."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema_rs
import pytest

from gateway.bindings import bindings_for
from gateway.openapi import build_document
from server.domain.deadletter import STATUSES
from server.domain.registry import NAME_PATTERN, URL_MAX, effective_openapi_url, url_problem
from server.http_surface import openapi_config
from server.services.table import SERVICES

URLS = [
    "http://a",
    "https://registry.example:8443/openapi.json?x=1#top",
    "HTTPS://Example.COM",
    "http://h:65535/",
    "http://h:00080",
    "http://h:",
    "http://h:0",
    "http://h:65536",
    "http://h:8x",
    "ftp://h",
    "http://",
    "http:/h",
    "//h/x",
    "h/x",
    "",
    "http://u:p@h",
    "http://h/a b",
    "http://h/\x7f",
    "http://h/\u00e9",
    "http://h\u2003/x",
    "http://" + "h" * (URL_MAX - 7),
    "http://" + "h" * (URL_MAX - 6),
]


@functools.cache
def document() -> dict[str, Any]:
    return build_document(
        bindings_for(SERVICES), title="product", version="v1", config=openapi_config()
    )


def component(name: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["schemas"][name]["properties"]
    return found


def query(method: str, path: str) -> dict[str, Any]:
    parameters = document()["paths"][path][method]["parameters"]
    return {p["name"]: p["schema"] for p in parameters if p["in"] == "query"}


@pytest.mark.parametrize("value", URLS)
def test_a_base_url_is_valid_in_the_document_as_on_the_server(value: str) -> None:
    for message in ("RegisterServiceRequest", "RegisteredService"):
        valid = jsonschema_rs.validator_for(component(message)["baseUrl"]).is_valid(value)
        assert valid is (url_problem(value) is None), (message, value)


@pytest.mark.parametrize("value", [*URLS, "/", "/openapi.json", "/a b", "//x", "/\u00e9"])
def test_an_openapi_url_is_absolute_a_path_or_none(value: str) -> None:
    base = "https://registry.example/api/"
    valid = jsonschema_rs.validator_for(component("RegisterServiceRequest")["openapiUrl"])
    resolved = effective_openapi_url(base, value)
    assert valid.is_valid(value) is (url_problem(resolved) is None), value


def test_names_versions_and_listing_filters() -> None:
    register = component("RegisterServiceRequest")
    assert register["name"]["pattern"] == NAME_PATTERN
    assert register["version"]["maxLength"] == 64
    services = query("get", "/registry")
    assert services["limit"]["minimum"] == 0
    assert services["namePrefix"]["maxLength"] == 64
    assert component("PollOpenApiRequest")["names"]["items"]["pattern"] == NAME_PATTERN


@pytest.mark.parametrize("prefix", ["/jobengine", "/orchestrator"])
def test_dead_letter_filters_carry_the_domain_rules(prefix: str) -> None:
    listing = query("get", f"{prefix}/deadletter")
    assert listing["limit"]["minimum"] == 0
    assert listing["status"]["enum"] == list(STATUSES)
    assert listing["fingerprint"]["pattern"] == "^[0-9a-f]{16}$"
    assert listing["errorCode"]["maxLength"] == 128
    pending = component("ReplayPendingDeadLetterEntriesRequest")
    assert pending["limit"]["minimum"] == 0
    assert pending["category"]["pattern"] == listing["category"]["pattern"]
    batch = component("BatchReplayDeadLetterEntriesRequest")["entryIds"]
    assert batch["items"]["pattern"] == "^[A-Za-z0-9._:-]{1,64}$"


def test_null_lists_and_metadata_are_documented_as_the_gateway_takes_them() -> None:
    """null is proto3 JSON's "unset" (gateway/json_parser.py): no names polls every
    service, no services is an empty batch, no metadata is none."""
    assert component("PollOpenApiRequest")["names"]["type"] == ["array", "null"]
    services = component("ReplicateServicesRequest")["services"]
    assert services["type"] == ["array", "null"]
    assert services["items"] == {"$ref": "#/components/schemas/RegisteredService"}
    assert component("RegisterServiceRequest")["metadata"]["type"] == ["object", "null"]
