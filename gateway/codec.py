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
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import json_parser, json_printer
from gateway.errors import GatewayError, status_error
from gateway.field_paths import FieldError
from gateway.scalars import finite_float, finite_int

JSON_TYPE = "application/json"
HTTP_BODY = "google.api.HttpBody"


def to_jsonable(message: Message) -> dict[str, Any]:
    return json_printer.to_jsonable(message)  # type: ignore[no-any-return]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _no_constant(name: str) -> Any:
    """RFC 8259 §6: NaN and Infinity are not JSON numbers (Python's json takes them)."""
    raise ValueError(f"{name} is not a JSON value; send it as a string")


def loads(raw: bytes) -> Any:
    """Decode a JSON document (RFC 8259): UTF-8, finite numbers, no bare NaN/Infinity.

    A blank document (only whitespace) is malformed: JSON needs a value.
    """
    if not raw.strip(b" \t\r\n"):  # RFC 8259 §2: whitespace around a value, not instead
        blank = "only whitespace" if raw else "empty"
        raise _bad_body(f"malformed JSON body: {blank}; send a JSON value or no body")
    try:
        return json.loads(
            raw, parse_float=finite_float, parse_int=finite_int, parse_constant=_no_constant
        )
    except UnicodeDecodeError:
        raise _bad_body("malformed JSON body: not UTF-8") from None
    except RecursionError:
        raise _bad_body("malformed JSON body: nested too deeply") from None
    except ValueError as exc:
        raise _bad_body(f"malformed JSON body: {exc}") from exc


def is_http_body(message_type: Any) -> bool:
    return getattr(message_type, "full_name", None) == HTTP_BODY


def parse_into(message: Message, value: Any, *, field: FieldDescriptor | None) -> None:
    """Merge decoded JSON into `message`, or into its `field` when the body is one field.

    Raises GatewayError INVALID_ARGUMENT (reason INVALID_BODY) naming the field path
    in the request message, e.g. `invalid body field "inner.count": 3000000000 is not
    a decimal int32; out of range`.
    """
    if field is None and not isinstance(value, dict):
        raise _bad_body(f"request body must be a JSON object, got {json_parser.json_kind(value)}")
    try:
        if field is None:
            json_parser.merge_object(message, value)
        else:
            json_parser.set_value(message, field, value, path=field.name)
    except FieldError as exc:
        raise _bad_body(f'invalid body field "{exc.param}": {exc.reason}', exc.param) from exc
    except RecursionError:
        raise _bad_body("request body is nested too deeply") from None


def _bad_body(message: str, field_name: str = "body") -> GatewayError:
    return status_error(
        code_pb2.INVALID_ARGUMENT, message, field_name=field_name, reason="INVALID_BODY"
    )
