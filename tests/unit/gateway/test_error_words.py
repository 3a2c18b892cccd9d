"""Error texts in product words (issue 8, item 5): types and JSON syntax errors.

gateway/field_paths.type_words names a field's type as a client knows it (schema
names, JSON words), never package-qualified; gateway/codec.py words every syntax
error Python's json reports in ours, with line and column. Conformance through both
gateways: tests/conformance/test_error_words.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2, timestamp_pb2

from gateway import codec
from gateway.errors import GatewayError, encodable, error_body, status_error
from gateway.field_paths import named_words, type_words
from tests.support import protos

Kitchen = protos.echo_pb2().Kitchen
FIELDS = Kitchen.DESCRIPTOR.fields_by_name


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("name", "string"), ("i32", "int32"), ("u64", "uint64"), ("s32", "sint32"),
        ("f64", "fixed64"), ("flt", "float"), ("flag", "bool"), ("data", "bytes"),
        ("color", "Color"), ("inner", "Inner"),
        ("tags", "array of string"), ("colors", "array of Color"), ("inners", "array of Inner"),
        ("labels", "map of string to string"), ("counters", "map of string to int32"),
        ("at", "timestamp"), ("ttl", "duration"), ("update_mask", "field mask"),
        ("maybe_name", "string"), ("maybe_count", "int64"), ("maybe_bytes", "bytes"),
        ("attrs", "JSON object"), ("any_value", "JSON value"), ("list_value", "JSON array"),
    ],
)  # fmt: skip
def test_type_words(field: str, words: str) -> None:
    assert type_words(FIELDS[field]) == words


def test_nested_types_go_by_their_package_relative_name() -> None:
    """As the OpenAPI components are named (gateway/openapi_schema.component_names)."""
    file = descriptor_pb2.FileDescriptorProto(name="words/v1/nested.proto", package="words.v1")
    outer = file.message_type.add(name="Job")
    outer.enum_type.add(name="State").value.add(name="STATE_UNSPECIFIED", number=0)
    outer.nested_type.add(name="Step")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    job = pool.FindMessageTypeByName("words.v1.Job")
    assert named_words(job) == "Job"
    assert named_words(job.nested_types_by_name["Step"]) == "Job.Step"
    assert named_words(job.enum_types_by_name["State"]) == "Job.State"
    assert named_words(timestamp_pb2.Timestamp.DESCRIPTOR) == "timestamp"
    assert named_words(struct_pb2.Value.DESCRIPTOR) == "JSON value"


def _syntax(raw: bytes) -> str:
    with pytest.raises(GatewayError) as info:
        codec.loads(raw)
    message: str = info.value.status.message
    return message.removeprefix("malformed JSON body: ")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x0b", "expected a value at line 1, column 1"),
        (b"[1,]", "expected a value at line 1, column 4"),
        (b"{", "expected a member name in double quotes at line 1, column 2"),
        (b"{'a': 1}", "expected a member name in double quotes at line 1, column 2"),
        (b'{"a" 1}', "expected ':' after a member name at line 1, column 6"),
        (b"[1 2]", "expected ',' or a closing bracket at line 1, column 4"),
        (b'{"a": 1 "b": 2}', "expected ',' or a closing bracket at line 1, column 9"),
        (b'"abc', "unterminated string starting at line 1, column 1"),
        (b'"a\x01"', "unescaped control character in a string at line 1, column 3"),
        (b'"\\q"', "invalid escape in a string at line 1, column 2"),
        (b'"\\u12"', "invalid \\u escape in a string at line 1, column 3"),
        (b"{} x", "more data after the JSON value at line 1, column 4"),
        (b"{}\n\n  {}", "more data after the JSON value at line 3, column 3"),
        (b"[\n  1,\n  tru\n]", "expected a value at line 3, column 3"),
        ('[\n"é", x]'.encode(), "expected a value at line 2, column 6"),  # characters
        (b"\xef\xbb\xbf", "expected a value at line 1, column 1"),  # a BOM, then nothing
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),  # RFC 8259 §8.1
        ('{"a": 1}'.encode("utf-32"), "not UTF-8"),
        (b'"\xed\xa0\x80"', "not UTF-8"),  # a UTF-16 surrogate is no UTF-8 character
    ],
)
def test_json_syntax_errors_in_our_words(raw: bytes, reason: str) -> None:
    assert _syntax(raw) == reason


def test_every_python_json_error_is_worded() -> None:
    """Each message Python's json raises (json/decoder.py, _json.c) has our words."""
    for theirs in (
        "Expecting value", "Expecting property name enclosed in double quotes",
        "Expecting ':' delimiter", "Expecting ',' delimiter", "Unterminated string starting at",
        "Invalid control character at", "Invalid control character '\\x01' at",
        "Invalid \\escape", "Invalid \\escape: 'q'", "Invalid \\uXXXX escape",
        "Illegal trailing comma before end of object", "Extra data",
    ):  # fmt: skip
        words = codec.syntax_error(json.JSONDecodeError(theirs, "[]", 1))
        assert words.endswith(" at line 1, column 2")
        assert not words.startswith("not JSON"), theirs
    assert codec.syntax_error(json.JSONDecodeError("Something new", "x", 0)) == (
        "not JSON at line 1, column 1"
    )


def test_a_byte_order_mark_is_ignored() -> None:
    assert codec.loads(b'\xef\xbb\xbf {"a": 1}') == {"a": 1}


def test_every_error_body_encodes_what_it_quotes() -> None:
    """A lone surrogate (from a JSON `\\ud800` escape) is written as an escape, so the
    status and the body encode; other text, non-ASCII included, is unchanged."""
    assert encodable("a\ud800b\udfff") == "a\\ud800b\\udfff"
    assert encodable("é€😀") == "é€😀"
    error = status_error(3, 'unknown "\ud800"', field_name="x.\ud800", reason="INVALID_BODY")
    body = json.loads(error_body(error.status))
    assert body["error"] == 'unknown "\\ud800"'
    assert body["details"][1]["fieldViolations"] == [
        {"field": "x.\\ud800", "description": 'unknown "\\ud800"'}
    ]


@pytest.mark.parametrize(
    ("document", "param"),
    [
        ({"k" * 5000: 1}, "k" * 64 + "…(5000 characters)"),
        ({"counters": {"k" * 5000: "x"}}, f"counters[{'k' * 64}…(5000 characters)]"),
    ],
)
def test_a_long_member_name_is_cut_in_the_field_path(document: Any, param: str) -> None:
    """A caller's member names and map keys are theirs to make long: an error's field
    path shows 64 characters and the length, so the answer stays small."""
    with pytest.raises(GatewayError) as refused:
        codec.parse_into(protos.echo_pb2().Kitchen(), document, field=None)
    assert refused.value.status.message.startswith(f'invalid body field "{param}": ')
    assert len(refused.value.status.SerializeToString()) < 1_000
