"""Scalar parsing: one string -> the value of one proto field.

The forms are those of grpc-gateway's DefaultQueryParser (`runtime/query.go`) for
scalars and enums (`1`, `true`/`t`/`1`, enum names or numbers, URL-safe or standard
base64 bytes) and the proto3 JSON mapping's string forms for the JSON-scalar
well-known types (RFC 3339 Timestamp, `1.5s` Duration, FieldMask paths, wrappers,
Struct/Value/ListValue from JSON text). A value that does not parse raises
FieldError naming the parameter and the expected form.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor

from gateway.codec import finite_float
from gateway.field_paths import FieldError, proto_type

_FD = FieldDescriptor


@dataclass(frozen=True, slots=True)
class _Converter:
    form: str  # what a valid value looks like; "{type}" is the enum or message name
    parse: Callable[[FieldDescriptor, str], object]  # raises ValueError(detail)


_DECIMAL = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {
    f"{sign}{word}": -math.inf if sign == "-" else math.inf
    for sign in ("", "+", "-")
    for word in ("inf", "infinity")
} | {"nan": math.nan}
_BOOLS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def _integer(bits: int, *, signed: bool) -> Callable[[FieldDescriptor, str], object]:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def parse(_: FieldDescriptor, text: str) -> int:
        if not _DECIMAL.fullmatch(text):
            raise ValueError
        if len(text.lstrip("+-").lstrip("0")) > 20:  # before int(): it caps at 4300 digits
            raise ValueError("out of range")
        value = int(text)
        if not low <= value <= high:
            raise ValueError("out of range")
        return value

    return parse


def _double(_: FieldDescriptor, text: str) -> float:
    """Go's strconv.ParseFloat spellings: decimals, exponents, NaN and [+-]Inf(inity)."""
    word = _FLOAT_WORDS.get(text.lower())
    if word is not None:
        return word
    if not _FLOAT.fullmatch(text):
        raise ValueError
    value = float(text)
    if math.isinf(value):
        raise ValueError("out of range")
    return value


def _float(field: FieldDescriptor, text: str) -> float:
    value = _double(field, text)
    try:
        struct.pack("<f", value)  # OverflowError past float32's range, as ParseFloat(s, 32)
    except OverflowError:
        raise ValueError("out of range") from None
    return value


def _bool(_: FieldDescriptor, text: str) -> bool:
    """strconv.ParseBool's words (t, f, 1, 0, true, false), case-insensitively."""
    try:
        return _BOOLS[text.lower()]
    except KeyError:
        raise ValueError from None


def _bytes(_: FieldDescriptor, text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (as vanguard-go's params.go)."""
    url_safe = "-" in text or "_" in text
    if url_safe and ("+" in text or "/" in text):
        raise ValueError("mixes the standard and URL-safe alphabets")
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_" if url_safe else None, validate=True)


def _enum(field: FieldDescriptor, text: str) -> int:
    enum = field.enum_type
    if enum is None:
        raise ValueError
    value = enum.values_by_name.get(text)
    if value is None and _DECIMAL.fullmatch(text) and len(text) < 12:
        value = enum.values_by_number.get(int(text))
    if value is None:
        names = [v.name for v in enum.values]
        more = ", ..." if len(names) > 20 else ""
        raise ValueError(f"expected one of {', '.join(names[:20])}{more} or its number")
    return value.number


_SCALARS: Final[dict[int, _Converter]] = {
    **dict.fromkeys((_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32),
                    _Converter("a decimal int32", _integer(32, signed=True))),
    **dict.fromkeys((_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64),
                    _Converter("a decimal int64", _integer(64, signed=True))),
    **dict.fromkeys((_FD.TYPE_UINT32, _FD.TYPE_FIXED32),
                    _Converter("a decimal uint32", _integer(32, signed=False))),
    **dict.fromkeys((_FD.TYPE_UINT64, _FD.TYPE_FIXED64),
                    _Converter("a decimal uint64", _integer(64, signed=False))),
    _FD.TYPE_FLOAT: _Converter("a float (decimal, NaN, Infinity or -Infinity)", _float),
    _FD.TYPE_DOUBLE: _Converter("a double (decimal, NaN, Infinity or -Infinity)", _double),
    _FD.TYPE_BOOL: _Converter("a bool (true, false, 1 or 0)", _bool),
    _FD.TYPE_STRING: _Converter("a string", lambda _, text: text),
    _FD.TYPE_BYTES: _Converter("base64 bytes (standard or URL-safe)", _bytes),
    _FD.TYPE_ENUM: _Converter("a {type} name or number", _enum),
}  # fmt: skip


# --- well-known types: the JSON mapping's string forms -------------------------------

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])",
    re.IGNORECASE,  # RFC 3339 section 5.6 allows a lower-case "t" and "z"
)
_DURATION = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,9})?s")
_UPPER = re.compile(r"[A-Z]")
_JSON_ERRORS = (json_format.ParseError, ValueError, TypeError, RecursionError)


def new_message(field: FieldDescriptor) -> Any:
    """A fresh message of the field's own class, so CopyFrom works across pools.

    Typed Any: its attributes come from a descriptor, not from a stub.
    """
    if field.message_type is None:
        raise ValueError(f"{field.full_name} is not a message field")
    return message_factory.GetMessageClass(field.message_type)()


def subfield(field: FieldDescriptor, name: str) -> FieldDescriptor:
    """A field of a message-typed field: a wrapper's `value`, a map entry's `key`."""
    if field.message_type is None:
        raise ValueError(f"{field.full_name} is not a message field")
    return field.message_type.fields_by_name[name]


def _timestamp(field: FieldDescriptor, text: str) -> object:
    if not _RFC3339.fullmatch(text):
        raise ValueError
    msg = new_message(field)
    msg.FromJsonString(text.upper())  # checks the range
    return msg


def _duration(field: FieldDescriptor, text: str) -> object:
    if not _DURATION.fullmatch(text):  # FromJsonString alone accepts " 1s" and "1_0s"
        raise ValueError
    msg = new_message(field)
    try:
        msg.FromJsonString(text)
    except ValueError:  # the pattern matched, so only the +-10,000-year range is left
        raise ValueError("out of range") from None
    return msg


_MASK_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")


def _field_mask(field: FieldDescriptor, text: str) -> object:
    """Comma-separated paths; lowerCamel ones become snake_case as in json_format.

    FieldMask.FromJsonString refuses snake_case paths, which AIP clients send, so a
    path that already holds "_" is kept as written.
    """
    msg = new_message(field)
    for path in filter(None, text.split(",")):
        snake = path if "_" in path else _UPPER.sub(lambda m: "_" + m[0].lower(), path)
        if not _MASK_PATH.match(snake):
            # A mask path names fields: lower snake_case identifiers joined by dots. Anything
            # else could never be printed back to JSON (json_format refuses upper case).
            raise ValueError(f"{path!r} is not a field path")
        msg.paths.append(snake)
    return msg


def _json(field: FieldDescriptor, text: str) -> object:
    msg = new_message(field)
    try:
        # Numbers beyond a double (1e400) would become infinities that Struct/Value
        # cannot print back; refuse them here, as the body decoder does.
        json_format.ParseDict(json.loads(text, parse_float=finite_float), msg)
    except _JSON_ERRORS:
        raise ValueError from None
    return msg


def _value(field: FieldDescriptor, text: str) -> object:
    """JSON when the text parses as JSON (`42`, `true`, `{"a":1}`), else the string."""
    try:
        return _json(field, text)
    except ValueError:
        msg = new_message(field)
        msg.string_value = text
        return msg


def _list_value(field: FieldDescriptor, text: str) -> object:
    """One parameter: a JSON array, or else a one-element list holding its Value."""
    try:
        return _json(field, text)
    except ValueError:
        msg = new_message(field)
        msg.values.add().CopyFrom(_value(subfield(field, "values"), text))
        return msg


def _wrapper(field: FieldDescriptor, text: str) -> object:
    inner = subfield(field, "value")
    msg = new_message(field)
    setattr(msg, inner.name, _SCALARS[inner.type].parse(inner, text))
    return msg


_WRAPPED: Final = {
    "DoubleValue": _FD.TYPE_DOUBLE, "FloatValue": _FD.TYPE_FLOAT,
    "Int64Value": _FD.TYPE_INT64, "UInt64Value": _FD.TYPE_UINT64,
    "Int32Value": _FD.TYPE_INT32, "UInt32Value": _FD.TYPE_UINT32,
    "BoolValue": _FD.TYPE_BOOL, "StringValue": _FD.TYPE_STRING, "BytesValue": _FD.TYPE_BYTES,
}  # fmt: skip

_WELL_KNOWN: Final[dict[str, _Converter]] = {
    "google.protobuf.Timestamp": _Converter(
        "an RFC 3339 timestamp such as 2026-11-22T10:00:00Z", _timestamp
    ),
    "google.protobuf.Duration": _Converter("a duration in seconds such as 1.5s", _duration),
    "google.protobuf.FieldMask": _Converter("comma-separated field paths", _field_mask),
    "google.protobuf.Struct": _Converter("a JSON object", _json),
    "google.protobuf.Value": _Converter("a JSON value or a string", _value),
    "google.protobuf.ListValue": _Converter("a JSON array", _list_value),
    **{
        f"google.protobuf.{name}": _Converter(f"a {{type}} ({_SCALARS[kind].form})", _wrapper)
        for name, kind in _WRAPPED.items()
    },
}
_UNSETTABLE: Final = frozenset({"google.protobuf.Any", "google.protobuf.Empty"})


def convert_scalar(field: FieldDescriptor, text: str, *, param: str) -> object:
    """Convert one string to the value of `field` (for messages: a new message).

    Failures raise FieldError naming `param` and the expected form.
    """
    converter = _converter(field, param)
    try:
        text.encode()
    except UnicodeEncodeError:
        raise FieldError(param, "value is not valid UTF-8") from None
    try:
        return converter.parse(field, text)
    except ValueError as exc:
        reason = f"{_show(text)} is not {converter.form.format(type=proto_type(field))}"
        raise FieldError(param, f"{reason}; {exc}" if str(exc) else reason) from None


def _converter(field: FieldDescriptor, param: str) -> _Converter:
    if field.message_type is None:
        scalar = _SCALARS.get(field.type)
        if scalar is None:
            raise FieldError(param, f"unsupported field type {field.type}")
        return scalar
    name = field.message_type.full_name
    if name in _UNSETTABLE:
        raise FieldError(param, f"{name} cannot be set from a query parameter")
    well_known = _WELL_KNOWN.get(name)
    if well_known is None:
        raise FieldError(param, f"{name} is a message, not a single value; name its fields")
    return well_known


def _show(text: str) -> str:
    return json.dumps(text[:40], ensure_ascii=False) + ("..." if len(text) > 40 else "")
