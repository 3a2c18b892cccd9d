"""`allow_unknown_body_fields` (gateway/v1/http.proto): members of the body's own object
that name no field are ignored instead of refused, nested ones still are, and OpenAPI
documents such a body open (no `additionalProperties: false`)."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2
from google.api import http_pb2 as rule_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gateway import codec
from gateway.bindings import bindings_for
from gateway.errors import GatewayError
from gateway.openapi import build_document
from gateway.v1 import http_pb2 as gateway_http_pb2


def _service(allow: bool) -> ServiceDescriptor:
    """`POST /v1/things/{id}` with `body: "*"`: {id, name, inner {count}}."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=f"open{int(allow)}/v1/things.proto", package=f"open{int(allow)}.v1", syntax="proto3"
    )
    inner = file.message_type.add(name="Inner")
    inner.field.add(name="count", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    request = file.message_type.add(name="Request")
    request.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    request.field.add(name="name", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    request.field.add(
        name="inner",
        number=3,
        type=F.TYPE_MESSAGE,
        type_name=f".open{int(allow)}.v1.Inner",
        label=F.LABEL_OPTIONAL,
    )
    file.message_type.add(name="Thing")
    method = file.service.add(name="Things").method.add(
        name="Make",
        input_type=f".open{int(allow)}.v1.Request",
        output_type=f".open{int(allow)}.v1.Thing",
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        rule_pb2.HttpRule(post="/v1/things/{id}", body="*")
    )
    method.options.Extensions[gateway_http_pb2.http].CopyFrom(
        gateway_http_pb2.HttpBehavior(allow_unknown_body_fields=allow)
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName(f"open{int(allow)}.v1.Things")


def _parse(allow: bool, body: dict[str, Any]) -> Any:
    (binding,) = bindings_for([_service(allow)])
    assert binding.behavior.allow_unknown_body is allow
    message = message_factory.GetMessageClass(binding.method.input_type)()
    codec.parse_into(message, body, field=binding.body, allow_unknown=allow)
    return message


def test_unknown_top_level_members_are_ignored_when_allowed() -> None:
    message = _parse(True, {"name": "a", "color": "red", "inner": {"count": 2}})
    assert (message.name, message.inner.count) == ("a", 2)


def test_nested_unknown_members_are_still_refused() -> None:
    with pytest.raises(GatewayError) as refused:
        _parse(True, {"inner": {"count": 2, "size": 3}})
    assert refused.value.status.message == 'invalid body field "inner.size": unknown field'


def test_without_the_option_unknown_members_are_refused() -> None:
    with pytest.raises(GatewayError) as refused:
        _parse(False, {"name": "a", "color": "red"})
    assert refused.value.status.message == 'invalid body field "color": unknown field'


@pytest.mark.parametrize("allow", [True, False])
def test_openapi_documents_the_body_open_or_closed(allow: bool) -> None:
    document = build_document(bindings_for([_service(allow)]), title="t", version="1")
    body = document["paths"]["/v1/things/{id}"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert ("additionalProperties" in schema) is not allow
