"""A request stream in one HTTP body: a JSON array, or JSON values one per line.

Client- and bidi-streaming methods take their request messages from the body, in
either of the two forms the major transcoders accept:

- a JSON array, each element one message (Envoy's grpc_json_transcoder);
- newline-delimited JSON (grpc-gateway's `runtime.NewlineDelimited`, ndjson): values
  separated by line breaks, each one message; a single value is a stream of one.

So `[{"a":1},{"a":2}]`, `{"a":1}\\n{"a":2}\\n` and `{"a":1}` are streams of two, two
and one message; a top-level array is always the stream, never one message. An
absent body (no bytes) is a stream of none; a blank one is malformed JSON, as for
any other method (RFC 8259 §2). Values decode as `codec.loads` decodes a body,
with the same decoder and the same error words: UTF-8 (a leading byte order mark
ignored), finite numbers, no bare NaN or Infinity; values on one line with no
break between them (`{"a":1}{"a":2}`) are malformed.

What an element must be (an object, or the value of the rule's body field) is for
the caller to check: `RequestStream.framing` says how the body was written, so a
lone scalar can be told from a wrong element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.codec import (
    decode_text,
    decode_value,
    malformed_body,
    position,
    skip_whitespace,
)

Framing = Literal["array", "lines", "one", "none"]


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
    as for any body (gateway/codec.py): `malformed JSON body: expected a value at
    line 2, column 1`, `... not UTF-8`, `... only whitespace; send a JSON value or
    no body`, `... more data after the JSON value at line 1, column 8; put one JSON
    value per line`.
    """
    if not raw:
        return RequestStream([], "none")
    text = decode_text(raw)
    values: list[Any] = []
    at = skip_whitespace(text, 0)
    if at == len(text):
        raise malformed_body("only whitespace; send a JSON value or no body")
    while at < len(text):
        value, end = decode_value(text, at)
        values.append(value)
        at = skip_whitespace(text, end)
        if at < len(text) and "\n" not in text[end:at]:
            raise malformed_body(
                f"more data after the JSON value at {position(text, at)}; "
                "put one JSON value per line"
            )
    if len(values) > 1:
        return RequestStream(values, "lines")
    if isinstance(values[0], list):
        return RequestStream(values[0], "array")
    return RequestStream(values, "one")
