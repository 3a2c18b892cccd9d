"""gateway/conditional.py: If-Match parsing (RFC 9110 §13.1.1, §8.8.3) and the
start-up checks of `etag_field` / `precondition_required`."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2
from google.api import http_pb2 as rule_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from gateway.bindings import BindingError, bindings_for
from gateway.conditional import etag_plan, parse_if_match
from gateway.errors import GatewayError
from gateway.v1 import http_pb2 as gateway_http_pb2


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("*", (True, (), ())),
        (' "a" ', (False, ("a",), ())),
        ('"a", W/"b" ,"c","a"', (False, ("a", "c"), ('W/"b"',))),
        ('W/"a"', (False, (), ('W/"a"',))),
        ('"a,b", ,"",', (False, ("a,b", ""), ())),  # `,` is an etagc; empty elements
        ('"\x80x"', (False, ("\x80x",), ())),  # obs-text
    ],
)  # fmt: skip
def test_if_match_parses(
    header: str, expected: tuple[bool, tuple[str, ...], tuple[str, ...]]
) -> None:
    assert parse_if_match(header) == expected


@pytest.mark.parametrize("header", ["a", '"a" "b"', '"a', '*, "a"', "", " , ", 'w/"a"', '"a b"'])
def test_malformed_if_match_is_400(header: str) -> None:
    with pytest.raises(GatewayError) as refused:
        parse_if_match(header)
    assert refused.value.http_status is None  # INVALID_ARGUMENT: 400 by the table
    assert refused.value.status.code == 3


def _service(
    options: dict[str, object], *, request_fields: tuple[str, ...] = ("id",)
) -> ServiceDescriptor:
    """`DELETE /v1/things/{id}` with these gateway options; the response has no fields."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="acme/v1/things.proto",
        package="acme.v1",
        syntax="proto3",
    )
    request = file.message_type.add(name="Request")
    for number, name in enumerate(request_fields, start=1):
        request.field.add(name=name, number=number, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    file.message_type.add(name="Done")
    method = file.service.add(name="Things").method.add(
        name="Delete", input_type=".acme.v1.Request", output_type=".acme.v1.Done"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        rule_pb2.HttpRule(delete="/v1/things/{id}")
    )
    method.options.Extensions[gateway_http_pb2.http].CopyFrom(
        gateway_http_pb2.HttpBehavior(**options)  # type: ignore[arg-type]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("acme.v1.Things")


@pytest.mark.parametrize(
    ("options", "fields", "reason"),
    [
        ({"etag_field": "etag"}, ("id",),
         "etag_field 'etag' names no string field of the request, its body or the response"),
        ({"precondition_required": True}, ("id", "etag"), "precondition_required needs etag_field"),
    ],
)  # fmt: skip
def test_options_naming_no_field_are_refused(
    options: dict[str, object], fields: tuple[str, ...], reason: str
) -> None:
    (binding,) = bindings_for([_service(options, request_fields=fields)])
    with pytest.raises(BindingError) as refused:
        etag_plan(binding)
    assert str(refused.value) == f"acme.v1.Things.Delete (/v1/things/{{id}}): {reason}"


def test_a_request_etag_field_is_planned() -> None:
    service = _service(
        {"etag_field": "etag", "precondition_required": True}, request_fields=("id", "etag")
    )
    (binding,) = bindings_for([service])
    plan = etag_plan(binding)
    assert plan is not None
    assert (plan.request_name, plan.response, plan.required) == ("etag", None, True)
