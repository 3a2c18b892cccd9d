"""gateway/codec.py: decoding JSON request bodies (RFC 8259) and merging them.

Every failure is a GatewayError INVALID_ARGUMENT with reason INVALID_BODY whose
BadRequest violation names `body` (the document) or the field path (a value).
"""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from gateway import codec
from gateway.errors import GatewayError
from tests.support import protos

Kitchen = protos.echo_pb2().Kitchen


def _refusal(error: GatewayError) -> tuple[str, str]:
    """(message, violation field) of a gateway error."""
    detail: any_pb2.Any = error.status.details[-1]
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    return error.status.message, bad_request.field_violations[0].field


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"  ", "malformed JSON body: only whitespace; send a JSON value or no body"),
        (b"\r \t\n", "malformed JSON body: only whitespace; send a JSON value or no body"),
        (b"", "malformed JSON body: empty; send a JSON value or no body"),
        (b"\x0b", "malformed JSON body: expected a value at line 1, column 1"),
        (b"NaN", "malformed JSON body: NaN is not a JSON value; send it as a string"),
        (b"[Infinity]", "malformed JSON body: Infinity is not a JSON value; send it as a string"),
        (b"1e400", "malformed JSON body: number 1e400 is out of range"),
        (b"1" + b"0" * 400, "malformed JSON body: number 1" + "0" * 39 + "... is out of range"),
        (
            b"[2" + b"0" * 308 + b"]",
            "malformed JSON body: number 2" + "0" * 39 + "... is out of range",
        ),
        (
            b"-" + b"9" * 5000,
            "malformed JSON body: number -" + "9" * 39 + "... is out of range",
        ),
        (b'"\xff"', "malformed JSON body: not UTF-8"),
        (b"[" * 50_000, "malformed JSON body: nested too deeply"),
    ],
)
def test_loads_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(GatewayError) as info:
        codec.loads(raw)
    assert _refusal(info.value) == (message, "body")


def test_loads_takes_integers_that_fit_a_double() -> None:
    assert codec.loads(b"[18446744073709551616, -1" + b"0" * 308 + b"]") == [2**64, -(10**308)]


def test_loads_takes_whitespace_around_a_value() -> None:
    assert codec.loads(b' \r\n\t{"a": [1, 2.5]} \n') == {"a": [1, 2.5]}


def test_parse_into_names_the_field() -> None:
    with pytest.raises(GatewayError) as info:
        codec.parse_into(Kitchen(), {"inner": {"count": 2**31}}, field=None)
    assert _refusal(info.value) == (
        'invalid body field "inner.count": 2147483648 is not a decimal int32; out of range',
        "inner.count",
    )


def test_parse_into_one_field_body() -> None:
    message = Kitchen()
    codec.parse_into(message, ["a", "b"], field=Kitchen.DESCRIPTOR.fields_by_name["tags"])
    assert list(message.tags) == ["a", "b"]


def test_parse_into_needs_an_object_for_the_whole_request() -> None:
    with pytest.raises(GatewayError) as info:
        codec.parse_into(Kitchen(), [1], field=None)
    assert _refusal(info.value) == ("request body must be a JSON object, got an array", "body")


def test_parse_into_deep_nesting_is_a_client_error() -> None:
    document: dict[str, object] = {}
    for _ in range(2000):
        document = {"child": document}
    with pytest.raises(GatewayError) as info:
        codec.parse_into(Kitchen(), {"inner": document}, field=None)
    assert _refusal(info.value) == ("request body is nested too deeply", "body")
