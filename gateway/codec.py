"""JSON <-> proto with the printer options set once, and HttpBody pass-through.

Printing: lowerCamel names or the proto's `json_name`, fields without presence
always printed, int64 as strings, enums as names (proto3 JSON mapping).
Parsing: malformed JSON, wrong types and unknown fields are client errors that name
what was wrong, never a 500. Values go through the converters of path and query
parameters (gateway/json_parser.py), and a refused value's BadRequest violation
names its field (`inner.count`); only a body that is not JSON, or not an object,
names `body`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import json_parser, json_printer
from gateway.errors import GatewayError, status_error
from gateway.field_paths import FieldError, lookup_field
from gateway.scalars import NumberOutOfRange, finite_float, finite_int
from gateway.text import quoted_excerpt

JSON_TYPE = "application/json"
HTTP_BODY = "google.api.HttpBody"


def to_jsonable(message: Message) -> dict[str, Any]:
    return json_printer.to_jsonable(message)  # type: ignore[no-any-return]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


class _NotAJsonValue(ValueError):
    """A constant Python's json reads and JSON has not; its text is the reason."""


def _no_constant(name: str) -> Any:
    """RFC 8259 §6: NaN and Infinity are not JSON numbers (Python's json takes them)."""
    raise _NotAJsonValue(f"{name} is not a JSON value; send it as a string")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose member names are unique (RFC 8259 §4: a receiver of duplicates
    cannot know which one was meant; protojson and json_format refuse them too)."""
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                shown = quoted_excerpt(name)
                raise _NotAJsonValue(f"member name {shown} appears twice in one object")
            seen.add(name)
    return members


_DECODER: Final = json.JSONDecoder(
    parse_float=finite_float,
    parse_int=finite_int,
    parse_constant=_no_constant,
    object_pairs_hook=_unique_members,
)
_WHITESPACE: Final = re.compile(r"[ \t\r\n]*")  # RFC 8259 §2's four
_BOM: Final = "\ufeff"
# Python's json wording (json/decoder.py, _json.c) -> ours; the position is added.
_SYNTAX: Final = (
    ("Expecting value", "expected a value"),
    ("Expecting property name", "expected a member name in double quotes"),
    ("Expecting ':'", "expected ':' after a member name"),
    ("Expecting ','", "expected ',' or a closing bracket"),
    ("Unterminated string", "unterminated string starting"),
    ("Invalid control character", "unescaped control character in a string"),
    ("Invalid \\uXXXX", "invalid \\u escape in a string"),
    ("Invalid \\escape", "invalid escape in a string"),
    ("Illegal trailing comma", "a comma before a closing bracket"),
    ("Extra data", "more data after the JSON value"),
)


def loads(raw: bytes) -> Any:
    """Decode a JSON document (RFC 8259): UTF-8, finite numbers, no bare NaN/Infinity.

    A blank document (only whitespace) is malformed: JSON needs a value. A leading
    byte order mark is ignored (§8.1 allows it); UTF-16 and UTF-32 are refused
    (§8.1: JSON exchanged between systems is UTF-8).

    Raises GatewayError INVALID_ARGUMENT (reason INVALID_BODY, field `body`) in our
    words with the position: `malformed JSON body: expected a value at line 1,
    column 1`, `... not UTF-8`, `... number 1e400 is out of range`.
    """
    if not raw.strip(b" \t\r\n"):  # RFC 8259 §2: whitespace around a value, not instead
        blank = "only whitespace" if raw else "empty"
        raise malformed_body(f"{blank}; send a JSON value or no body")
    text = decode_text(raw)
    value, end = decode_value(text, skip_whitespace(text, 0))
    end = skip_whitespace(text, end)
    if end < len(text):
        raise malformed_body(f"more data after the JSON value at {position(text, end)}")
    return value


def decode_text(raw: bytes) -> str:
    """The text of a JSON body: UTF-8 (RFC 8259 §8.1), one leading byte order mark
    dropped. Raises GatewayError `malformed JSON body: not UTF-8`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed_body("not UTF-8") from None
    return text[1:] if text.startswith(_BOM) else text


def skip_whitespace(text: str, at: int) -> int:
    """The offset of the first character at or after `at` that is not JSON whitespace."""
    return _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]  # always matches


def decode_value(text: str, at: int) -> tuple[Any, int]:
    """One JSON value starting at offset `at` of `text`: (value, offset after it).

    Raises GatewayError (malformed_body) worded by `syntax_error` for a syntax
    error, or saying which number or constant no field can take.
    """
    try:
        value, end = _DECODER.raw_decode(text, at)
    except json.JSONDecodeError as exc:
        raise malformed_body(syntax_error(exc)) from None
    except RecursionError:
        raise malformed_body("nested too deeply") from None
    except (_NotAJsonValue, NumberOutOfRange) as exc:
        raise malformed_body(str(exc)) from None
    except ValueError:  # nothing else is known to get here; Python's words never do
        raise malformed_body("not a JSON value") from None
    return value, end


def syntax_error(exc: json.JSONDecodeError) -> str:
    """Python json's syntax error in our words, with where it is: `expected a value
    at line 1, column 1` (lines and columns count from 1, columns in characters)."""
    words = next((ours for theirs, ours in _SYNTAX if exc.msg.startswith(theirs)), "not JSON")
    return f"{words} at {position(exc.doc, exc.pos)}"


def position(text: str, offset: int) -> str:
    """`line L, column C` of a character offset, as an editor counts them."""
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"line {line}, column {column}"


def malformed_body(reason: str) -> GatewayError:
    """400 INVALID_BODY for the document as a whole: `malformed JSON body: {reason}`."""
    return _bad_body(f"malformed JSON body: {reason}")


def is_http_body(message_type: Any) -> bool:
    return getattr(message_type, "full_name", None) == HTTP_BODY


def parse_into(
    message: Message, value: Any, *, field: FieldDescriptor | None, allow_unknown: bool = False
) -> None:
    """Merge decoded JSON into `message`, or into its `field` when the body is one field.
    With `allow_unknown`, members of the body's own object that name no field of its
    message are left out (`allow_unknown_body_fields`); nested ones are still checked.

    Raises GatewayError INVALID_ARGUMENT (reason INVALID_BODY) naming the field path
    in the request message, e.g. `invalid body field "inner.count": 3000000000 is not
    a decimal int32; out of range`.
    """
    if field is None and not isinstance(value, dict):
        raise _bad_body(f"request body must be a JSON object, got {json_parser.json_kind(value)}")
    if allow_unknown and isinstance(value, dict):
        value = _known_members(message.DESCRIPTOR if field is None else field.message_type, value)
    try:
        if field is None:
            json_parser.merge_object(message, value)
        else:
            json_parser.set_value(message, field, value, path=field.name)
    except FieldError as exc:
        raise _bad_body(f'invalid body field "{exc.param}": {exc.reason}', exc.param) from exc
    except RecursionError:
        raise _bad_body("request body is nested too deeply") from None


def _known_members(descriptor: Any, value: dict[str, Any]) -> dict[str, Any]:
    """`value` without the members that name no field of `descriptor` (a message that is
    not free JSON; anything else is returned as it is)."""
    if descriptor is None or descriptor.full_name.startswith("google.protobuf."):
        return value
    if descriptor.GetOptions().map_entry:
        return value
    return {key: item for key, item in value.items() if lookup_field(descriptor, key) is not None}


def _bad_body(message: str, field_name: str = "body") -> GatewayError:
    return status_error(
        code_pb2.INVALID_ARGUMENT, message, field_name=field_name, reason="INVALID_BODY"
    )
