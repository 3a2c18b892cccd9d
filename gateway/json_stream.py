"""A request stream in one HTTP body: a JSON array, or JSON values one per line.

Client- and bidi-streaming methods take their request messages from the body, in
either of the two forms the major transcoders accept:

- a JSON array, each element one message (Envoy's grpc_json_transcoder);
- newline-delimited JSON (grpc-gateway's `runtime.NewlineDelimited`, ndjson): values
  separated by line breaks, each one message; a single value is a stream of one.

So `[{"a":1},{"a":2}]`, `{"a":1}\\n{"a":2}\\n` and `{"a":1}` are streams of two, two
and one message; a top-level array is always the stream, never one message. An
absent body (no bytes) is a stream of none; a blank one is malformed JSON, as for
any other method (RFC 8259 §2). Values decode as `codec.loads` decodes a body:
UTF-8, finite numbers, no bare NaN or Infinity; values on one line with no break
between them (`{"a":1}{"a":2}`) are malformed.

What an element must be (an object, or the value of the rule's body field) is for
the caller to check: `RequestStream.framing` says how the body was written, so a
lone scalar can be told from a wrong element.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from google.rpc import code_pb2

from gateway.errors import GatewayError, status_error
from gateway.scalars import finite_float, finite_int

Framing = Literal["array", "lines", "one", "none"]
_WHITESPACE: Final = re.compile(r"[ \t\r\n]*")  # RFC 8259 §2's four


def _no_constant(name: str) -> Any:
    """RFC 8259 §6: NaN and Infinity are not JSON numbers (Python's json takes them)."""
    raise ValueError(f"{name} is not a JSON value; send it as a string")


_DECODER: Final = json.JSONDecoder(
    parse_float=finite_float, parse_int=finite_int, parse_constant=_no_constant
)


@dataclass(frozen=True, slots=True)
class RequestStream:
    """The decoded elements, in order, and the form they came in: `array` (one JSON
    array), `lines` (two or more values, one per line), `one` (a single value that is
    not an array), `none` (no body)."""

    elements: list[Any]
    framing: Framing


def decode_stream(raw: bytes) -> RequestStream:
    """Decode a request stream body.

    Raises GatewayError INVALID_ARGUMENT (reason INVALID_BODY, field `body`) worded
    as for any body: `malformed JSON body: Expecting value: line 2 column 1 (char 9)`,
    `... not UTF-8`, `... only whitespace; send a JSON value or no body`.
    """
    if not raw:
        return RequestStream([], "none")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("not UTF-8") from None
    values: list[Any] = []
    at = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if at == len(text):
        raise _malformed("only whitespace; send a JSON value or no body")
    while at < len(text):
        try:
            value, end = _DECODER.raw_decode(text, at)
        except RecursionError:
            raise _malformed("nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and the number and constant hooks
            raise _malformed(str(exc)) from None
        values.append(value)
        at = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if at < len(text) and "\n" not in text[end:at]:
            extra = json.JSONDecodeError("Extra data", text, at)
            raise _malformed(f"{extra}; put one JSON value per line")
    if len(values) > 1:
        return RequestStream(values, "lines")
    if isinstance(values[0], list):
        return RequestStream(values[0], "array")
    return RequestStream(values, "one")


def _malformed(reason: str) -> GatewayError:
    return status_error(
        code_pb2.INVALID_ARGUMENT,
        f"malformed JSON body: {reason}",
        field_name="body",
        reason="INVALID_BODY",
    )
