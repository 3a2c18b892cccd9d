"""gateway/response.py and gateway/app.py: `sse_id_field` writes each Server-Sent
Event's `id:` from a response field, `last_event_id_field` takes a Last-Event-ID header
into a request field (WHATWG HTML §9.2), and bad uses are refused at start-up."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2
from google.api import http_pb2 as rule_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from gateway.app import _resume_from
from gateway.behavior import http_behavior
from gateway.bindings import Binding, BindingError, bindings_for
from gateway.openapi import build_document
from gateway.response import check_success_status, sse_frame
from gateway.v1 import http_pb2 as gateway_http_pb2


def _service(*, streaming: bool = True, **options: object) -> ServiceDescriptor:
    """`GET /v1/feed` with `Request {after (string), count (int32)}` answering (a stream
    of) `Item {position (string), count (int32)}`."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="made/v1/feed.proto", package="made.v1", syntax="proto3"
    )
    for message_name, text in (("Request", "after"), ("Item", "position")):
        message = file.message_type.add(name=message_name)
        message.field.add(name=text, number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
        message.field.add(name="count", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    method = file.service.add(name="Feed").method.add(
        name="Follow",
        input_type=".made.v1.Request",
        output_type=".made.v1.Item",
        server_streaming=streaming,
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(rule_pb2.HttpRule(get="/v1/feed"))
    method.options.Extensions[gateway_http_pb2.http].CopyFrom(
        gateway_http_pb2.HttpBehavior(**options)  # type: ignore[arg-type]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("made.v1.Feed")


def _binding(**options: Any) -> Binding:
    (binding,) = bindings_for([_service(**options)])
    return binding


def test_the_options_are_read_and_accepted_on_a_stream() -> None:
    binding = _binding(sse_id_field="position", last_event_id_field="after")
    behavior = http_behavior(binding.method)
    assert (behavior.sse_id_field, behavior.last_event_id_field) == ("position", "after")
    check_success_status(binding)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"sse_id_field": "missing"}, "sse_id_field 'missing' names no singular string field"),
        ({"sse_id_field": "count"}, "sse_id_field 'count' names no singular string field"),
        (
            {"last_event_id_field": "count"},
            "last_event_id_field 'count' names no singular string field of made.v1.Request",
        ),
        (
            {"streaming": False, "sse_id_field": "position"},
            "sse_id_field on a method that does not stream",
        ),
        (
            {"streaming": False, "last_event_id_field": "after"},
            "last_event_id_field on a method that does not stream",
        ),
    ],
    ids=["unknown", "not-string", "request-not-string", "unary-id", "unary-resume"],
)
def test_an_option_it_cannot_honour_is_refused(options: dict[str, object], problem: str) -> None:
    with pytest.raises(BindingError) as refused:
        check_success_status(_binding(**options))
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("event_id", "frame"),
    [
        ("42", b'id: 42\ndata: {"a":1}\n\n'),
        ("", b'data: {"a":1}\n\n'),
        (None, b'data: {"a":1}\n\n'),
        ("4\n2", b'data: {"a":1}\n\n'),  # would end the line early: left out
        ("4\r2", b'data: {"a":1}\n\n'),
        ("4\x002", b'data: {"a":1}\n\n'),  # a client ignores an id with NUL
    ],
    ids=["id", "empty", "none", "lf", "cr", "nul"],
)
def test_sse_frames(event_id: str | None, frame: bytes) -> None:
    assert sse_frame(b'{"a":1}', event_id) == frame


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [("17", "3", "17"), (" 17 ", "", "17"), ("", "3", "3"), ("  ", "3", "3"), (None, "3", "3")],
)
def test_last_event_id_wins_over_the_query(header: str | None, query: str, expected: str) -> None:
    binding = _binding(last_event_id_field="after")
    request = message_factory.GetMessageClass(binding.method.input_type)(after=query)
    _resume_from(binding, request, header)
    assert request.after == expected  # type: ignore[attr-defined]


def test_without_the_option_the_header_changes_nothing() -> None:
    binding = _binding()
    request = message_factory.GetMessageClass(binding.method.input_type)(after="3")
    _resume_from(binding, request, "17")
    assert request.after == "3"  # type: ignore[attr-defined]


def test_openapi_documents_the_last_event_id_header() -> None:
    binding = _binding(last_event_id_field="after")
    document = build_document([binding], title="made", version="v1")
    parameters = document["paths"]["/v1/feed"]["get"]["parameters"]
    [header] = [p for p in parameters if p["in"] == "header"]
    assert header["name"] == "Last-Event-ID"
    assert header["description"].endswith("sets `after`, over the query.")
