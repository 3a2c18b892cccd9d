"""Start-up validation: every bad HttpRule is refused naming service, method, template."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from gateway.app import Gateway, GatewayConfig
from gateway.bindings import BindingError, bindings_for
from gateway.inprocess import InProcessUpstream
from gateway.openapi import build_document
from gateway.v1 import http_pb2 as gateway_http_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _service(
    *rules: http_pb2.HttpRule, deprecated: tuple[tuple[str, str], ...] = ()
) -> ServiceDescriptor:
    """A fresh pool with `bad.v1.Svc`, one method per rule, over a request with a
    string, a repeated, a map and a message field; `deprecated` (legacy prefix,
    successor) pairs become the service's `deprecated_prefixes`."""
    file = descriptor_pb2.FileDescriptorProto(
        name="bad/v1/svc.proto", package="bad.v1", syntax="proto3"
    )
    request = file.message_type.add(name="Req")
    request.field.add(name="id", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request.field.add(name="tags", number=2, type=_F.TYPE_STRING, label=_F.LABEL_REPEATED)
    entry = request.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request.field.add(
        name="labels",
        number=3,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".bad.v1.Req.LabelsEntry",
    )
    request.field.add(
        name="inner",
        number=4,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_OPTIONAL,
        type_name=".bad.v1.Req",
    )
    service = file.service.add(name="Svc")
    if deprecated:
        defaults = service.options.Extensions[gateway_http_pb2.http_defaults]
        for prefix, successor in deprecated:
            defaults.deprecated_prefixes.add(prefix=prefix, successor=successor)
    for index, rule in enumerate(rules):
        method = service.method.add(
            name=f"M{index}", input_type=".bad.v1.Req", output_type=".bad.v1.Req"
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("bad.v1.Svc")


BAD_RULES = [
    (http_pb2.HttpRule(get="/v1/{id"), "unclosed '{'"),
    (http_pb2.HttpRule(get="v1/items"), "must start with '/'"),
    (http_pb2.HttpRule(get="/v1/{missing}"), "path variable 'missing' names no field"),
    (http_pb2.HttpRule(get="/v1/{tags}"), "path variable 'tags' names a repeated field"),
    (http_pb2.HttpRule(get="/v1/{labels}"), "path variable 'labels' names a map field"),
    (http_pb2.HttpRule(get="/v1/{inner}"), "path variable 'inner' names a message field"),
    (http_pb2.HttpRule(get="/v1/{inner.nope}"), "path variable 'inner.nope' names no field"),
    (http_pb2.HttpRule(post="/v1/x", body="nope"), "body 'nope' names no field of bad.v1.Req"),
    (http_pb2.HttpRule(get="/v1/x", response_body="nope"), "response_body 'nope' names no field"),
    (http_pb2.HttpRule(get="/v1/{id}/{id}"), "appears twice"),
]


@pytest.mark.parametrize(("rule", "reason"), BAD_RULES, ids=[r for _, r in BAD_RULES])
def test_bad_rule_is_refused_naming_method_and_template(
    rule: http_pb2.HttpRule, reason: str
) -> None:
    with pytest.raises(BindingError) as err:
        list(bindings_for([_service(rule)]))
    kind = rule.WhichOneof("pattern")
    assert str(err.value).startswith(f"bad.v1.Svc.M0 ({getattr(rule, str(kind))}): ")
    assert reason in str(err.value)


def test_conflicting_routes_are_refused_at_start_up() -> None:
    service = _service(
        http_pb2.HttpRule(get="/v1/items/{id}"), http_pb2.HttpRule(get="/v1/items/{inner.id}")
    )
    with pytest.raises(BindingError) as err:
        # No channel: grpc.aio outside a running loop makes an event loop nobody closes.
        Gateway(bindings_for([service]), InProcessUpstream({}), GatewayConfig())
    assert str(err.value).startswith("bad.v1.Svc.M1 (/v1/items/{inner.id}): ")
    assert "conflicts with GET '/v1/items/{id}'" in str(err.value)


def test_additional_bindings_are_flattened_with_their_index() -> None:
    rule = http_pb2.HttpRule(get="/v1/a/{id}")
    rule.additional_bindings.add(post="/v1/b", body="*")
    rule.additional_bindings.add(custom=http_pb2.CustomHttpPattern(kind="search", path="/v1/c"))
    found = [
        (b.index, b.http_method, b.template.source, b.body_all)
        for b in bindings_for([_service(rule)])
    ]
    assert found == [
        (0, "GET", "/v1/a/{id}", False),
        (1, "POST", "/v1/b", True),
        (2, "SEARCH", "/v1/c", False),
    ]


def test_methods_without_rules_are_not_bound() -> None:
    assert list(bindings_for([_service()])) == []


async def _echo(request: Message, context: object) -> Message:
    return request


async def test_a_deprecated_prefix_serves_both_without_a_hand_written_twin() -> None:
    rule = http_pb2.HttpRule(get="/v1/items/{id}")
    rule.additional_bindings.add(post="/v1/items", body="*")
    rule.additional_bindings.add(get="/other/{id}")
    service = _service(rule, deprecated=(("/v0", "/v1"),))
    found = [
        (b.index, b.http_method, b.template.source, b.deprecated_successor)
        for b in bindings_for([service])
    ]
    assert found == [
        (0, "GET", "/v1/items/{id}", None),
        (1, "POST", "/v1/items", None),
        (2, "GET", "/other/{id}", None),
        (3, "GET", "/v0/items/{id}", ("/v0", "/v1")),
        (4, "POST", "/v0/items", ("/v0", "/v1")),
    ]

    handlers = {"/bad.v1.Svc/M0": grpc.unary_unary_rpc_method_handler(_echo)}
    gateway = Gateway(bindings_for([service]), InProcessUpstream(handlers))
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        current = await client.get("/v1/items/a1")
        legacy = await client.get("/v0/items/a1")
        posted = await client.post("/v0/items", json={"id": "b2"})
        missing = await client.get("/v0/other/a1")
    item = {"id": "a1", "tags": [], "labels": {}}  # the printer emits unset lists and maps
    assert (current.status_code, current.json()) == (200, item)
    assert "deprecation" not in current.headers
    assert (legacy.status_code, legacy.json()) == (200, item)
    assert legacy.headers["deprecation"] == "true"
    assert legacy.headers["link"] == '</v1/items/a1>; rel="successor-version"'
    assert (posted.status_code, posted.json()) == (200, {**item, "id": "b2"})
    assert posted.headers["link"] == '</v1/items>; rel="successor-version"'
    assert missing.status_code == 404

    paths = build_document(bindings_for([service]), title="t", version="v1")["paths"]
    assert paths["/v0/items/{id}"]["get"]["deprecated"] is True
    assert paths["/v0/items/{id}"]["get"]["operationId"] == "Svc_M0_3"
    assert paths["/v0/items"]["post"]["deprecated"] is True
    assert "deprecated" not in paths["/v1/items/{id}"]["get"]
    assert "/v0/other/{id}" not in paths


def test_a_hand_written_legacy_twin_is_refused() -> None:
    rule = http_pb2.HttpRule(get="/v1/items/{id}")
    rule.additional_bindings.add(get="/v0/items/{id}")
    with pytest.raises(BindingError) as err:
        list(bindings_for([_service(rule, deprecated=(("/v0", "/v1"),))]))
    assert str(err.value) == (
        "bad.v1.Svc.M0 (/v0/items/{id}): served as the legacy twin of /v1/items/{id} "
        "(deprecated_prefixes); remove the hand-written binding"
    )
