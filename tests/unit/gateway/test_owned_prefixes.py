"""gateway/app.py: a service's `owned_prefixes` (gateway/v1/http.proto) give the
gateway's own errors under them (no route 404, bad path 400, 405) the service's
error behaviour, as its methods' errors have; other paths keep the plain answer."""

from __future__ import annotations

import httpx
from google.api import annotations_pb2
from google.api import http_pb2 as rule_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from gateway.app import Gateway
from gateway.bindings import bindings_for
from gateway.v1 import http_pb2 as gateway_http_pb2


def _service(*prefixes: str, oauth: bool = False) -> ServiceDescriptor:
    """`GET /v1/things/{id}` of a service owning `prefixes`, errors `no-store`."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="owned/v1/things.proto", package="owned.v1", syntax="proto3"
    )
    request = file.message_type.add(name="Request")
    request.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    file.message_type.add(name="Thing")
    service = file.service.add(name="Things")
    defaults = gateway_http_pb2.HttpBehavior(error_cache_control="no-store")
    if oauth:
        defaults.error_format = gateway_http_pb2.ERROR_FORMAT_OAUTH
    service.options.Extensions[gateway_http_pb2.http_defaults].CopyFrom(
        gateway_http_pb2.ServiceHttpBehavior(defaults=defaults, owned_prefixes=prefixes)
    )
    method = service.method.add(
        name="GetThing", input_type=".owned.v1.Request", output_type=".owned.v1.Thing"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        rule_pb2.HttpRule(get="/v1/things/{id}")
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("owned.v1.Things")


async def _ask(gateway: Gateway, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.request(method, path)


async def test_unrouted_paths_under_the_prefix_answer_the_owners_errors() -> None:
    gateway = Gateway(bindings_for([_service("/v1/things/")]), upstream=None)  # type: ignore[arg-type]
    for method, path, status in (
        ("GET", "/v1/things/a/b", 404),
        ("GET", "/v1/things", 404),  # the prefix itself, without its slash
        ("DELETE", "/v1/things/a", 405),
    ):
        response = await _ask(gateway, method, path)
        assert response.status_code == status, (path, response.text)
        assert response.headers["cache-control"] == "no-store", path
        assert set(response.json()) == {"error", "code", "details"}
    elsewhere = await _ask(gateway, "GET", "/v1/thingsmore")
    assert elsewhere.status_code == 404
    assert "cache-control" not in elsewhere.headers


async def test_without_owned_prefixes_nothing_changes() -> None:
    gateway = Gateway(bindings_for([_service()]), upstream=None)  # type: ignore[arg-type]
    response = await _ask(gateway, "GET", "/v1/things/a/b")
    assert response.status_code == 404
    assert "cache-control" not in response.headers


async def test_the_owners_error_format_applies() -> None:
    gateway = Gateway(bindings_for([_service("/v1/", oauth=True)]), upstream=None)  # type: ignore[arg-type]
    response = await _ask(gateway, "GET", "/v1/nothing")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "error_description"}
