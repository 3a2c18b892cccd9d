"""gateway/response.py: `created_field` answers an idempotent create's repeat 200 instead
of its success status (AIP-133, RFC 9110 §15.3.2), and bad uses are refused at start-up."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2
from google.api import http_pb2 as rule_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gateway.behavior import http_behavior
from gateway.bindings import Binding, BindingError, bindings_for
from gateway.openapi import build_document
from gateway.response import check_success_status, success_status
from gateway.v1 import http_pb2 as gateway_http_pb2


def _service(**options: object) -> ServiceDescriptor:
    """`POST /v1/things` answering `Created {thing, created (bool), count (int32)}`."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="made/v1/things.proto", package="made.v1", syntax="proto3"
    )
    file.message_type.add(name="Request")
    created = file.message_type.add(name="Created")
    for number, (name, kind) in enumerate(
        (("thing", F.TYPE_STRING), ("created", F.TYPE_BOOL), ("count", F.TYPE_INT32)), start=1
    ):
        created.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    method = file.service.add(name="Things").method.add(
        name="Create", input_type=".made.v1.Request", output_type=".made.v1.Created"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        rule_pb2.HttpRule(post="/v1/things", body="*")
    )
    method.options.Extensions[gateway_http_pb2.http].CopyFrom(
        gateway_http_pb2.HttpBehavior(**options)  # type: ignore[arg-type]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("made.v1.Things")


def _binding(**options: object) -> Binding:
    (binding,) = bindings_for([_service(**options)])
    return binding


def test_created_answers_the_success_status_and_found_answers_200() -> None:
    binding = _binding(success_status=201, created_field="created")
    assert http_behavior(binding.method).created_field == "created"
    check_success_status(binding)
    response = message_factory.GetMessageClass(binding.method.output_type)
    assert success_status(binding, response(thing="a", created=True)) == 201
    assert success_status(binding, response(thing="a", created=False)) == 200


def test_without_created_field_the_status_is_fixed() -> None:
    binding = _binding(success_status=201)
    assert http_behavior(binding.method).created_field is None
    response = message_factory.GetMessageClass(binding.method.output_type)
    assert success_status(binding, response(created=False)) == 201


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            {"success_status": 201, "created_field": "missing"},
            "created_field 'missing' names no singular bool field of made.v1.Created",
        ),
        (
            {"success_status": 201, "created_field": "count"},
            "created_field 'count' names no singular bool field of made.v1.Created",
        ),
        (
            {"created_field": "created"},
            "created_field with success_status 200: it needs a status with a body other "
            "than 200 (e.g. 201)",
        ),
        (
            {"success_status": 204, "created_field": "created"},
            "created_field with success_status 204: it needs a status with a body other "
            "than 200 (e.g. 201)",
        ),
    ],
    ids=["unknown", "not-bool", "200", "bodiless"],
)
def test_a_created_field_it_cannot_honour_is_refused(
    options: dict[str, object], problem: str
) -> None:
    with pytest.raises(BindingError) as refused:
        check_success_status(_binding(**options))
    assert problem in str(refused.value)


def test_openapi_documents_both_statuses() -> None:
    binding = _binding(success_status=201, created_field="created")
    document = build_document([binding], title="made", version="v1")
    responses = document["paths"]["/v1/things"]["post"]["responses"]
    assert responses["201"]["description"] == "Created"
    assert responses["200"]["description"] == "OK"
    assert responses["200"]["content"] == responses["201"]["content"]
