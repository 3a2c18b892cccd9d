"""Proto -> JSON-ready Python values, built from descriptors once instead of per call.

`json_format.MessageToDict` re-derives everything (field kind, JSON name, enum names,
well-known-type dispatch) for every field of every message it prints; that made it the
gateway's largest cost (DESIGN.md §8). Here a printer is built once per message type
(cached per pool and full name): a table of fields in number order, each with a value
converter chosen from a table by field type, and a table of defaults in declaration
order. The output is exactly `MessageToDict(m, always_print_fields_with_no_presence=True)`:
same keys, key order, values and types.

Key order mirrors json_format: first the fields that are present, by field number (what
`ListFields` yields), then the missing fields without presence, in declaration order.

Anything not proven equivalent goes to json_format: `Any` and extendable messages
always; and if a fast printer raises at all (out-of-range Timestamp, NaN in a
`Value`, unknown closed-enum number), the whole message is printed again by
json_format, so errors are its errors, too.
"""

from __future__ import annotations

import itertools
import math
import threading
from binascii import b2a_base64
from collections.abc import Callable, Mapping
from datetime import date
from operator import attrgetter
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

Convert = Callable[[Any], Any]
Printer = Callable[[Message], Any]
# One field in the present-fields pass: (attribute, JSON key, has presence, converter).
_Field = tuple[str, str, bool, Convert | None]

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
_BOOL_KEYS = {True: "true", False: "false"}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAYS: dict[int, str] = {}
_HOURS = [f"T{h:02d}:" for h in range(24)]
_MINUTES_SECONDS = [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]
_TIMESTAMP_MIN, _TIMESTAMP_MAX = -62135596800, 253402300799  # 0001-01-01, 9999-12-31
_DURATION_RANGE = range(-315576000000, 315576000000 + 1)
_NANOS = range(0, 1_000_000_000)
_WRAPPERS_FILE = "google/protobuf/wrappers.proto"

_cache: dict[tuple[object, str], Printer] = {}
_pending: dict[tuple[object, str], Printer] = {}  # the build in progress, under _lock
_lock = threading.Lock()
# Descriptor objects are identity-hashed; this saves computing the key on every call.
_public: dict[Descriptor, Printer] = {}


def printer_for(descriptor: Descriptor) -> Printer:
    """The printer for one message type; built on first use, then shared."""
    found = _public.get(descriptor)
    if found is None:
        found = _public[descriptor] = _with_fallback(_raw_printer(descriptor))
    return found


def _with_fallback(raw: Printer) -> Printer:
    """On any error json_format prints the message again: its output, or its error."""

    def printer(message: Message) -> Any:
        try:
            return raw(message)
        except Exception:
            return _delegate(message)

    return printer


def to_jsonable(message: Message) -> Any:
    """`MessageToDict(message, always_print_fields_with_no_presence=True)`, faster."""
    # The stubs type DESCRIPTOR as a union with upb's class, which is a Descriptor.
    return printer_for(cast(Descriptor, message.DESCRIPTOR))(message)


def _delegate(message: Message) -> Any:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _raw_printer(descriptor: Descriptor) -> Printer:
    """Cached printer without the fallback; nested messages call it directly.

    Printers are published only once fully built (a half-built one prints `{}`); a
    build that fails leaves this type to json_format rather than guess.
    """
    key = _key(descriptor)
    found = _cache.get(key)
    if found is None:
        with _lock:
            try:
                found = _nested(descriptor)
                _cache.update(_pending)
            except Exception:
                found = _cache[key] = _delegate
            finally:
                _pending.clear()
    return found


def _key(descriptor: Descriptor) -> tuple[object, str]:
    return (descriptor.file.pool, descriptor.full_name)


def _nested(descriptor: Descriptor) -> Printer:
    """Find or build, registering before filling so recursive types find themselves."""
    key = _key(descriptor)
    found = _cache.get(key) or _pending.get(key)
    if found is not None:
        return found
    special = _special_printer(descriptor)
    if special is not None:
        _pending[key] = special
        return special
    printer = _pending[key] = _MessagePrinter()
    printer.fill(descriptor)
    return printer


def _special_printer(descriptor: Descriptor) -> Printer | None:
    """Well-known types print as JSON scalars or containers, not as objects."""
    if descriptor.file.name == _WRAPPERS_FILE:
        return _wrapper_printer(descriptor)
    if descriptor.full_name == "google.protobuf.Any" or descriptor.extension_ranges:
        return _delegate
    return _WELL_KNOWN.get(descriptor.full_name)


class _MessagePrinter:
    """An ordinary message: present fields by number, then defaults by declaration."""

    __slots__ = ("defaults", "fields")

    def __init__(self) -> None:
        self.fields: tuple[_Field, ...] = ()
        self.defaults: tuple[tuple[str, Callable[[], Any]], ...] = ()

    def fill(self, descriptor: Descriptor) -> None:
        by_number = sorted(descriptor.fields, key=attrgetter("number"))
        self.fields = tuple(
            (f.name, f.json_name, f.has_presence, _field_converter(f)) for f in by_number
        )
        self.defaults = tuple(
            (f.json_name, _default_factory(f)) for f in descriptor.fields if not f.has_presence
        )

    def __call__(self, message: Message) -> dict[str, Any]:
        js: dict[str, Any] = {}
        absent = False
        has, get, float_, sign = message.HasField, getattr, float, math.copysign  # locals: hot
        for name, key, has_presence, convert in self.fields:
            if has_presence:
                if not has(name):
                    continue
                value = get(message, name)
            else:
                value = get(message, name)
                # Implicit presence: absent when all bits are zero, so -0.0 is present.
                if not value and (value.__class__ is not float_ or sign(1.0, value) > 0.0):
                    absent = True
                    continue
            js[key] = value if convert is None else convert(value)
        if absent:
            for key, default in self.defaults:
                if key not in js:
                    js[key] = default()
        return js


def _default_factory(field: FieldDescriptor) -> Callable[[], Any]:
    """What json_format prints for an absent field without presence (fresh containers)."""
    if _is_map(field):
        return dict
    if field.is_repeated:
        return list
    convert = _scalar_converter(field)
    value = field.default_value if convert is None else convert(field.default_value)
    return itertools.repeat(value).__next__


def _field_converter(field: FieldDescriptor) -> Convert | None:
    """The whole field's converter: singular, repeated or map; None means as-is."""
    if _is_map(field):
        return _map_converter(field)
    element = _scalar_converter(field)
    if not field.is_repeated:
        return element
    if element is None:
        return list
    return lambda values: list(map(element, values))


def _map_converter(field: FieldDescriptor) -> Convert:
    entry = _message_type(field)
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    stringify: Convert = _BOOL_KEYS.__getitem__ if key_field.type == _TYPE.TYPE_BOOL else str
    value = _scalar_converter(value_field) or _identity

    def convert(mapping: Mapping[Any, Any]) -> dict[str, Any]:
        return {stringify(k): value(mapping[k]) for k in mapping}  # .items() is slow here

    return convert


def _scalar_converter(field: FieldDescriptor) -> Convert | None:
    """One element's converter, chosen by field type from a table, not an if-chain."""
    if field.type in (_TYPE.TYPE_MESSAGE, _TYPE.TYPE_GROUP):
        return _nested(_message_type(field))
    if field.type == _TYPE.TYPE_ENUM:
        return _enum_converter(field)
    return _BY_TYPE[field.type]


class _EnumNames(dict[int, Any]):
    """Number -> JSON name; an unknown number of an open enum prints as the number."""

    def __missing__(self, number: int) -> int:
        return number


def _enum_converter(field: FieldDescriptor) -> Convert:
    """Names come from json_format itself at build time (custom JSON names included)."""
    enum = field.enum_type
    if enum is None:
        raise TypeError(f"{field.full_name} is an enum field without an enum type")
    if enum.full_name == "google.protobuf.NullValue":
        return _none
    probe = json_format._Printer()  # type: ignore[attr-defined]  # private, hence the fallback
    names = {n: probe._FieldToJsonObject(field, n) for n in enum.values_by_number}
    return (names if enum.is_closed else _EnumNames(names)).__getitem__


def _none(_: object) -> None:
    return None


def _identity(value: Any) -> Any:
    return value


def _double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return _NON_FINITE.get(value, "NaN")


def _float(value: float) -> float | str:
    """json_format prints float32 as the shortest decimal that round-trips to it."""
    if math.isfinite(value):
        return type_checkers.ToShortestFloat(value)
    return _NON_FINITE.get(value, "NaN")


def _base64(value: bytes) -> str:
    return b2a_base64(value, newline=False).decode("ascii")


_TYPE = FieldDescriptor
_BY_TYPE: dict[int, Convert | None] = {
    **dict.fromkeys((_TYPE.TYPE_INT32, _TYPE.TYPE_SINT32, _TYPE.TYPE_SFIXED32), None),
    **dict.fromkeys((_TYPE.TYPE_UINT32, _TYPE.TYPE_FIXED32, _TYPE.TYPE_BOOL), None),
    **dict.fromkeys((_TYPE.TYPE_INT64, _TYPE.TYPE_SINT64, _TYPE.TYPE_SFIXED64), str),
    **dict.fromkeys((_TYPE.TYPE_UINT64, _TYPE.TYPE_FIXED64), str),
    _TYPE.TYPE_STRING: None,
    _TYPE.TYPE_BYTES: _base64,
    _TYPE.TYPE_DOUBLE: _double,
    _TYPE.TYPE_FLOAT: _float,
}


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == _TYPE.TYPE_MESSAGE and _message_type(field).GetOptions().map_entry


def _message_type(field: FieldDescriptor) -> Descriptor:
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is a message field without a message type")
    return field.message_type


# Well-known types -------------------------------------------------------------


def _fraction(nanos: int) -> str:
    """0, 3, 6 or 9 fraction digits: as few as represent `nanos` exactly."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def _timestamp(message: Any) -> str:
    """RFC 3339 in UTC, as `Timestamp.ToJsonString`, from cached date and time parts."""
    seconds, nanos = message.seconds, message.nanos
    if not (_TIMESTAMP_MIN <= seconds <= _TIMESTAMP_MAX and 0 <= nanos < 1_000_000_000):
        raise ValueError("Timestamp out of range")  # json_format words the error
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    text = (_DAYS.get(days) or _day(days)) + _HOURS[hours] + _MINUTES_SECONDS[seconds]
    return f"{text}{_fraction(nanos)}Z" if nanos else text + "Z"


def _day(days: int) -> str:
    """'YYYY-MM-DD' of a day since the epoch, cached: a page of rows shares a few days."""
    if len(_DAYS) >= 4096:
        _DAYS.clear()
    text = _DAYS[days] = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    return text


def _duration(message: Any) -> str:
    """'1.5s' form, as `Duration.ToJsonString`, in integers rather than its float math."""
    seconds, nanos = message.seconds, message.nanos
    if seconds not in _DURATION_RANGE or abs(nanos) not in _NANOS or seconds * nanos < 0:
        raise ValueError("Duration out of range")  # json_format words the error
    sign = "-" if seconds < 0 or nanos < 0 else ""
    return f"{sign}{abs(seconds)}{_fraction(abs(nanos))}s"


def _field_mask(message: Any) -> str:
    return str(message.ToJsonString())  # the same routine json_format calls


def _value(message: Any) -> Any:
    """A `Value` by its `kind`; unset is null, as json_format prints it."""
    kind = message.WhichOneof("kind")
    return _VALUE_KINDS[kind](message) if kind is not None else None


_EXACT_INTEGER = 2.0**53  # every integer of smaller magnitude is exactly a double


def _number_value(message: Any) -> float | int:
    """A JSON number: integral values print as integers (`1`, not `1.0`), as Go's
    protojson and every JSON producer print them, so a payload's `{"n": 1}` comes back
    as written; beyond 2**53 a double holds no exact integer and prints as a float."""
    number = float(message.number_value)
    if not math.isfinite(number):
        raise ValueError("non-finite Value.number_value")  # json_format words the error
    if number.is_integer() and -_EXACT_INTEGER < number < _EXACT_INTEGER:
        return int(number)
    return number


def _list_value(message: Any) -> list[Any]:
    return list(map(_value, message.values))


def _struct(message: Any) -> dict[str, Any]:
    fields = message.fields
    return {key: _value(fields[key]) for key in fields}


_VALUE_KINDS: dict[str, Convert] = {
    "null_value": _none,
    "number_value": _number_value,
    "string_value": attrgetter("string_value"),
    "bool_value": attrgetter("bool_value"),
    "struct_value": lambda message: _struct(message.struct_value),
    "list_value": lambda message: _list_value(message.list_value),
}

_WELL_KNOWN: dict[str, Printer] = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Duration": _duration,
    "google.protobuf.FieldMask": _field_mask,
    "google.protobuf.Struct": _struct,
    "google.protobuf.Value": _value,
    "google.protobuf.ListValue": _list_value,
}


def _wrapper_printer(descriptor: Descriptor) -> Printer:
    """`google.protobuf.*Value` wrappers print as their `value` field alone."""
    convert = _scalar_converter(descriptor.fields_by_name["value"]) or _identity

    def wrapper(message: Message) -> Any:
        return convert(message.value)  # type: ignore[attr-defined]

    return wrapper
