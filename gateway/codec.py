"""JSON <-> proto with the printer options set once, and HttpBody pass-through.

Printing: lowerCamel names or the proto's `json_name`, fields without presence
always printed, int64 as strings, enums as names (proto3 JSON mapping).
Parsing: malformed JSON, wrong types and unknown fields are client errors that name
what was wrong, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import json_printer
from gateway.errors import GatewayError, status_error

JSON_TYPE = "application/json"
HTTP_BODY = "google.api.HttpBody"


def to_jsonable(message: Message) -> dict[str, Any]:
    return json_printer.to_jsonable(message)  # type: ignore[no-any-return]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def finite_float(text: str) -> float:
    """JSON numbers must fit a double: `1e400` is a client mistake, not infinity."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def loads(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_float=finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad_body(f"malformed JSON body: {exc}") from exc


def is_http_body(message_type: Any) -> bool:
    return getattr(message_type, "full_name", None) == HTTP_BODY


def parse_into(message: Message, value: Any, *, field: FieldDescriptor | None) -> None:
    """Merge decoded JSON into `message`, or into its `field` when the body is one field."""
    if field is not None:
        value = {field.json_name: value}
    elif not isinstance(value, dict):
        raise _bad_body(f"request body must be a JSON object, got {type(value).__name__}")
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as exc:
        raise _bad_body(f"invalid request body: {exc}") from exc
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        raise _bad_body(f"invalid request body: {exc}") from exc


def _bad_body(message: str) -> GatewayError:
    return status_error(
        code_pb2.INVALID_ARGUMENT, message, field_name="body", reason="INVALID_BODY"
    )
