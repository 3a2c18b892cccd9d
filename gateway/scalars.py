"""Scalar parsing: one string -> the value of one proto field.

The forms are those of grpc-gateway's DefaultQueryParser (`runtime/query.go`) for
scalars and enums (`1`, `true`/`t`/`1`, enum names or numbers, URL-safe or standard
base64 bytes) and the proto3 JSON mapping's string forms for the JSON-scalar
well-known types (RFC 3339 Timestamp, `1.5s` Duration, FieldMask paths, wrappers,
Struct/Value/ListValue from JSON text). A value that does not parse raises
FieldError naming the parameter and the expected form.

The same converters read JSON request bodies (gateway/json_parser.py): a string
there goes through `convert_scalar`, a JSON number through `convert_number`, so one
value means the same thing in a path, a query and a body. Every integer kind, enum
numbers included (int32, protobuf's language guide), is range-checked before it is
narrowed; nothing wraps. Error reasons are in our words: the runtime's exception
text (strptime's, binascii's) never reaches a caller, and types go by the names a
client sees (`Color`, `timestamp`; gateway/field_paths.type_words), never by a
package-qualified proto name.
"""

from __future__ import annotations

import base64
import calendar
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor

from gateway.field_paths import FieldError, element_words, type_words
from gateway.text import excerpt, quoted_excerpt

_FD = FieldDescriptor


class _Reason(ValueError):
    """A converter's refusal with a detail worth showing; other ValueErrors say only
    that the value is not of the expected form (their text is the runtime's)."""


@dataclass(frozen=True, slots=True)
class _Converter:
    form: str  # what a valid value looks like; "{type}" is the enum or message name
    parse: Callable[[FieldDescriptor, str], object]  # raises ValueError; _Reason shows


_DECIMAL = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {
    f"{sign}{word}": -math.inf if sign == "-" else math.inf
    for sign in ("", "+", "-")
    for word in ("inf", "infinity")
} | {"nan": math.nan}
_BOOLS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def finite_float(text: str) -> float:
    """JSON numbers must fit a double: `1e400` is a client mistake, not infinity."""
    value = float(text)
    if math.isinf(value):
        raise _out_of_range_number(text)
    return value


def finite_int(text: str) -> int:
    """An integer JSON number must fit a double too (RFC 8259 §6): no proto field takes
    a larger one, and Struct/Value would fail to store it. Checked before `int()`,
    which refuses past 4,300 digits in its own words."""
    if len(text.lstrip("-").lstrip("0")) > 309:  # 1.8e308 has 309 digits
        raise _out_of_range_number(text)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise _out_of_range_number(text) from None
    return value


EXACT_INTEGER: Final = 2**53  # IEEE 754 binary64 has a 53-bit significand
INEXACT_INTEGER: Final = (
    "is an integer beyond 2^53, which a JSON value field carries as a double; send it as a string"
)


def inexact_integer(value: Any) -> int | None:
    """The first integer of magnitude beyond 2^53 in decoded free JSON, or None.

    Struct, Value and ListValue carry every number as a double (proto3 JSON mapping),
    which holds each integer up to 2^53 exactly but not 2^53 + 1: such a number would
    reach the service already changed (9007199254740993 as 9007199254740992), so it is
    refused instead. A number written with a fraction or exponent (`1.0`, `1e20`) is a
    double as the client wrote it and passes."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) > EXACT_INTEGER:
                return item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


class _Inexact(ValueError):
    """Free JSON holding an integer beyond 2^53: refused, never read as a string."""


class NumberOutOfRange(ValueError):
    """A JSON number no field can take; its text is the client-facing reason."""


def _out_of_range_number(text: str) -> NumberOutOfRange:
    return NumberOutOfRange(f"number {excerpt(text)} is out of range")


def _bounds(bits: int, *, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


_INT32: Final = _bounds(32, signed=True)
# Inclusive (low, high) of every integer kind; enum numbers are int32.
_INTEGER_BOUNDS: Final[dict[int, tuple[int, int]]] = {
    **dict.fromkeys((_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_ENUM), _INT32),
    **dict.fromkeys((_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64),
                    _bounds(64, signed=True)),
    **dict.fromkeys((_FD.TYPE_UINT32, _FD.TYPE_FIXED32), _bounds(32, signed=False)),
    **dict.fromkeys((_FD.TYPE_UINT64, _FD.TYPE_FIXED64), _bounds(64, signed=False)),
}  # fmt: skip


def _decimal(text: str, low: int, high: int) -> int:
    """A decimal integer within [low, high]; ValueError otherwise, before any narrowing."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError
    if len(text.lstrip("+-").lstrip("0")) > 20:  # before int(): it caps at 4300 digits
        raise _Reason("out of range")
    return _in_range(int(text), low, high)


def _in_range(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise _Reason("out of range")
    return value


def _integer(bits: int, *, signed: bool) -> Callable[[FieldDescriptor, str], object]:
    low, high = _bounds(bits, signed=signed)

    def parse(_: FieldDescriptor, text: str) -> int:
        return _decimal(text, low, high)

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
        raise _Reason("out of range")
    return value


def _float(field: FieldDescriptor, text: str) -> float:
    return _float32(_double(field, text))


def _float32(value: float) -> float:
    try:
        struct.pack("<f", value)  # OverflowError past float32's range, as ParseFloat(s, 32)
    except OverflowError:
        raise _Reason("out of range") from None
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
        raise _Reason("mixes the standard and URL-safe alphabets")
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_" if url_safe else None, validate=True)


def _enum(field: FieldDescriptor, text: str) -> int:
    """A value's name, or its number: an int32 (checked before any lookup, since upb's
    values_by_number narrows 4294967297 to 1) that the enum declares."""
    enum = field.enum_type
    if enum is None:
        raise ValueError
    value = enum.values_by_name.get(text)
    if value is not None:
        return value.number
    if _DECIMAL.fullmatch(text):
        return _enum_number(field, _decimal(text, *_INT32))
    raise _unknown_enum(field)


def _enum_number(field: FieldDescriptor, number: int) -> int:
    """A declared number of the field's enum (grpc-gateway's query parser refuses the
    others; the body follows it, so a number means the same thing everywhere)."""
    enum = field.enum_type
    if enum is None:
        raise ValueError
    value = enum.values_by_number.get(_in_range(number, *_INT32))
    if value is None:
        raise _unknown_enum(field)
    return value.number


def _unknown_enum(field: FieldDescriptor) -> _Reason:
    names = [v.name for v in field.enum_type.values] if field.enum_type is not None else []
    more = ", ..." if len(names) > 20 else ""
    return _Reason(f"expected one of {', '.join(names[:20])}{more} or its number")


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
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])",
    re.IGNORECASE,  # RFC 3339 section 5.6 allows a lower-case "t" and "z"
)
_DURATION = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,9})?s")
_UPPER = re.compile(r"[A-Z]")
_WRAPPERS_FILE: Final = "google/protobuf/wrappers.proto"
_JSON_ERRORS = (json_format.ParseError, ValueError, TypeError, OverflowError, RecursionError)


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
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError
    year, month, day = (int(match[part]) for part in ("year", "month", "day"))
    if year == 0 or not 1 <= month <= 12:  # Timestamp starts at 0001-01-01
        raise _Reason("no such date")
    if day == 0 or day > calendar.monthrange(year, month)[1]:
        raise _Reason("day is out of range for month")
    if int(match["hour"]) > 23 or int(match["minute"]) > 59 or int(match["second"]) > 59:
        raise _Reason("no such time of day")  # protobuf has no leap second (:60)
    msg = new_message(field)
    try:
        msg.FromJsonString(text.upper())
    except ValueError:  # a real date and time, so only the 0001-9999 UTC range is left
        raise _Reason("out of range") from None
    return msg


def _duration(field: FieldDescriptor, text: str) -> object:
    if not _DURATION.fullmatch(text):  # FromJsonString alone accepts " 1s" and "1_0s"
        raise ValueError
    msg = new_message(field)
    try:
        msg.FromJsonString(text)
    except ValueError:  # the pattern matched, so only the +-10,000-year range is left
        raise _Reason("out of range") from None
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
            raise _Reason(f"{path!r} is not a field path")
        msg.paths.append(snake)
    return msg


def _json(field: FieldDescriptor, text: str) -> object:
    """Free JSON from its text. Integers beyond 2^53 are refused (inexact_integer), as
    in a body: `_Inexact`, which the Value and ListValue forms do not turn into a
    string, so a number means one thing in a query and a body."""
    msg = new_message(field)
    try:
        # Numbers beyond a double (1e400) would become infinities that Struct/Value
        # cannot print back; refuse them here, as the body decoder does.
        decoded = json.loads(text, parse_float=finite_float, parse_int=finite_int)
    except _JSON_ERRORS:
        raise ValueError from None
    inexact = inexact_integer(decoded)
    if inexact is not None:
        raise _Inexact(f"{_show_number(inexact)} {INEXACT_INTEGER}")
    try:
        json_format.ParseDict(decoded, msg)
    except _JSON_ERRORS:
        raise ValueError from None
    return msg


def _value(field: FieldDescriptor, text: str) -> object:
    """JSON when the text parses as JSON (`42`, `true`, `{"a":1}`), else the string."""
    try:
        return _json(field, text)
    except _Inexact:
        raise
    except ValueError:
        msg = new_message(field)
        msg.string_value = text
        return msg


def _list_value(field: FieldDescriptor, text: str) -> object:
    """One parameter: a JSON array, or else a one-element list holding its Value."""
    try:
        return _json(field, text)
    except _Inexact:
        raise
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
    # A wrapper reads as the value it wraps: the wrapping is the field's presence.
    **{
        f"google.protobuf.{name}": _Converter(_SCALARS[kind].form, _wrapper)
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
        raise _refusal(field, converter, quoted_excerpt(text), param, exc) from None


def convert_number(field: FieldDescriptor, number: int | float, *, param: str) -> object:
    """Convert a JSON number (proto3 JSON mapping) to the value of `field`.

    Integer kinds and enums take an integral number (`1e2` is 100) within the kind's
    range; float takes one within float32's range; the wrappers of those the same.
    Anything else raises FieldError naming `param` and the expected form, as
    convert_scalar does for strings.
    """
    converter = _converter(field, param)
    try:
        return _number(field, number)
    except ValueError as exc:
        raise _refusal(field, converter, _show_number(number), param, exc) from None


def _number(field: FieldDescriptor, number: int | float) -> object:
    if field.message_type is not None:
        kind = _WRAPPED.get(field.message_type.name)
        if kind is None or field.message_type.file.name != _WRAPPERS_FILE:
            raise ValueError
        inner = subfield(field, "value")
        msg = new_message(field)
        setattr(msg, inner.name, _number(inner, number))
        return msg
    bounds = _INTEGER_BOUNDS.get(field.type)
    if bounds is not None:
        if isinstance(number, float) and not number.is_integer():  # also NaN, Infinity
            raise ValueError
        integer = _in_range(int(number), *bounds)
        return _enum_number(field, integer) if field.type == _FD.TYPE_ENUM else integer
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        try:
            value = float(number)  # an int past a double raises OverflowError
        except OverflowError:
            raise _Reason("out of range") from None
        return _float32(value) if field.type == _FD.TYPE_FLOAT else value
    raise ValueError  # a string, bytes or bool field takes no number


def form_of(field: FieldDescriptor) -> str:
    """What a valid value of `field` looks like, for error messages ("a decimal int32")."""
    try:
        return _converter(field, field.name).form.format(type=element_words(field))
    except FieldError:
        return f"a value of type {type_words(field)}"


def _refusal(
    field: FieldDescriptor, converter: _Converter, shown: str, param: str, exc: ValueError
) -> FieldError:
    reason = f"{shown} is not {converter.form.format(type=element_words(field))}"
    if isinstance(exc, _Inexact):  # the number is the subject, not the parameter's text
        return FieldError(param, str(exc))
    detail = str(exc) if isinstance(exc, _Reason) else ""
    return FieldError(param, f"{reason}; {detail}" if detail else reason)


def _show_number(number: int | float) -> str:
    if isinstance(number, int) and number.bit_length() > 1024:  # str() stops at 4,300 digits
        return "a number of over 300 digits"
    text = repr(number) if isinstance(number, float) else str(number)
    return excerpt(text)


def _converter(field: FieldDescriptor, param: str) -> _Converter:
    if field.message_type is None:
        scalar = _SCALARS.get(field.type)
        if scalar is None:
            raise FieldError(param, f"a field of type {type_words(field)} cannot be set")
        return scalar
    name = field.message_type.full_name
    if name in _UNSETTABLE:
        raise FieldError(param, f"{element_words(field)} cannot be set from a query parameter")
    well_known = _WELL_KNOWN.get(name)
    if well_known is None:
        raise FieldError(
            param, f"{element_words(field)} is an object, not a single value; name its fields"
        )
    return well_known
