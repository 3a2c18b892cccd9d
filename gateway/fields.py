"""Set protobuf message fields from strings: path captures and query parameters.

Behaviour follows grpc-gateway's DefaultQueryParser (`runtime/query.go`) and the
query-parameter rules in `google/api/http.proto`:

- A parameter name is a dotted field path. Each part may be the proto name or the
  `json_name` (proto name first, as grpc-gateway does): `inner.label`, `customName`.
- A repeated field is set by repeating the parameter: `?tags=a&tags=b`. Values are
  never split on commas; grpc-gateway does not split them either.
- A map entry is `?labels[env]=prod` (grpc-gateway's `name[key]` syntax). The part
  before `[` is an ordinary dotted path, so `?inner.m[k]=v` works; the key runs to
  the final `]`, and there is only one level of brackets.
- Leaves are scalars, enums and the JSON-scalar well-known types. A message is
  reached one field at a time (`?inner.label=x`). Repeated messages are refused:
  "no client library can support such complicated mapping" (http.proto).

Values arrive percent-decoded. A bad parameter raises FieldError, and nothing else
escapes whatever the names and values (tests/unit/gateway/test_fields.py fuzzes it).
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.codec import finite_float

_FD = FieldDescriptor


class FieldError(ValueError):
    """A parameter that cannot be applied; `param` is the name as the caller wrote it."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f'invalid parameter "{param}": {reason}')
        self.param = param
        self.reason = reason


class UnknownParameter(FieldError):
    """No field of the message has this name, neither as proto name nor as json_name."""


# --- field paths ---------------------------------------------------------------------

_PATH_CACHE: dict[tuple[Descriptor, str], tuple[FieldDescriptor, ...]] = {}
_PATH_CACHE_LIMIT: Final = 4096  # bounded: callers control parameter names


def resolve_path(
    descriptor: Descriptor, dotted: str, *, param: str | None = None
) -> tuple[FieldDescriptor, ...]:
    """Resolve `a.b.c` to field descriptors; only successful resolutions are cached.

    The cache is keyed by the descriptor object, not its full name: two descriptor
    pools may define the same message name with different fields.
    """
    key = (descriptor, dotted)
    path = _PATH_CACHE.get(key)
    if path is None:
        path = _walk(descriptor, dotted, dotted if param is None else param)
        if len(_PATH_CACHE) >= _PATH_CACHE_LIMIT:
            _PATH_CACHE.clear()
        _PATH_CACHE[key] = path
    return path


def _walk(descriptor: Descriptor, dotted: str, param: str) -> tuple[FieldDescriptor, ...]:
    parts = dotted.split(".")
    path: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in parts:
        if current is None:  # the previous part was not a plain singular message
            raise FieldError(
                param, f'cannot set sub-fields of "{path[-1].name}" ({_type(path[-1])})'
            )
        found = _lookup(current, part)
        if found is None:
            raise UnknownParameter(param, f'no field "{part}" in {current.full_name}')
        path.append(found)
        # google.protobuf.* messages are leaves: their JSON form is not an object of fields.
        leaf = found.is_repeated or _message_name(found).startswith("google.protobuf.")
        current = None if leaf else found.message_type
    return tuple(path)


def _lookup(descriptor: Descriptor, part: str) -> FieldDescriptor | None:
    # Proto names are ASCII, and upb's map raises SystemError on a lone surrogate.
    by_name = descriptor.fields_by_name.get(part) if part.isascii() else None
    if by_name is not None:
        return by_name
    return next((f for f in descriptor.fields if f.json_name == part), None)


# --- scalar conversion ---------------------------------------------------------------


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


def _new(field: FieldDescriptor) -> Any:
    """A fresh message of the field's own class, so CopyFrom works across pools.

    Typed Any: its attributes come from a descriptor, not from a stub.
    """
    if field.message_type is None:
        raise ValueError(f"{field.full_name} is not a message field")
    return message_factory.GetMessageClass(field.message_type)()


def _subfield(field: FieldDescriptor, name: str) -> FieldDescriptor:
    """A field of a message-typed field: a wrapper's `value`, a map entry's `key`."""
    if field.message_type is None:
        raise ValueError(f"{field.full_name} is not a message field")
    return field.message_type.fields_by_name[name]


def _timestamp(field: FieldDescriptor, text: str) -> object:
    if not _RFC3339.fullmatch(text):
        raise ValueError
    msg = _new(field)
    msg.FromJsonString(text.upper())  # checks the range
    return msg


def _duration(field: FieldDescriptor, text: str) -> object:
    if not _DURATION.fullmatch(text):  # FromJsonString alone accepts " 1s" and "1_0s"
        raise ValueError
    msg = _new(field)
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
    msg = _new(field)
    for path in filter(None, text.split(",")):
        snake = path if "_" in path else _UPPER.sub(lambda m: "_" + m[0].lower(), path)
        if not _MASK_PATH.match(snake):
            # A mask path names fields: lower snake_case identifiers joined by dots. Anything
            # else could never be printed back to JSON (json_format refuses upper case).
            raise ValueError(f"{path!r} is not a field path")
        msg.paths.append(snake)
    return msg


def _json(field: FieldDescriptor, text: str) -> object:
    msg = _new(field)
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
        msg = _new(field)
        msg.string_value = text
        return msg


def _list_value(field: FieldDescriptor, text: str) -> object:
    """One parameter: a JSON array, or else a one-element list holding its Value."""
    try:
        return _json(field, text)
    except ValueError:
        msg = _new(field)
        msg.values.add().CopyFrom(_value(_subfield(field, "values"), text))
        return msg


def _wrapper(field: FieldDescriptor, text: str) -> object:
    inner = _subfield(field, "value")
    msg = _new(field)
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
        reason = f"{_show(text)} is not {converter.form.format(type=_type(field))}"
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


def _message_name(field: FieldDescriptor) -> str:
    return field.message_type.full_name if field.message_type is not None else ""


def _type(field: FieldDescriptor) -> str:
    """The type as a .proto file spells it, for error messages."""
    entry = _map_entry(field)
    if entry is not None:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map<{_type(key)}, {_type(value)}>"
    named = field.message_type or field.enum_type
    base = named.full_name if named is not None else _TYPE_NAMES.get(field.type, "group")
    return f"repeated {base}" if field.is_repeated else base


_TYPE_NAMES: Final = {v: k[5:].lower() for k, v in vars(_FD).items() if k.startswith("TYPE_")}


def _show(text: str) -> str:
    return json.dumps(text[:40], ensure_ascii=False) + ("..." if len(text) > 40 else "")


# --- setting fields ------------------------------------------------------------------


def set_field(
    message: Message,
    path: tuple[FieldDescriptor, ...],
    values: Sequence[str],
    *,
    param: str,
    map_key: str | None = None,
) -> None:
    """Set the field at `path` from `values`, creating parent messages.

    All values are converted before anything is written. A singular field takes
    one value (a ListValue also takes several, one Value each); a repeated field
    appends every value; a map needs `map_key`. Setting a oneof member while
    another member is set is refused, as in grpc-gateway's populateFieldValueFromPath.
    """
    if not path:
        raise FieldError(param, "empty field path")
    if not values:
        return
    parent = message
    for step in path[:-1]:
        _check_oneof(parent, step, param)
        parent = getattr(parent, step.name)
    leaf = path[-1]
    _check_oneof(parent, leaf, param)
    entry = _map_entry(leaf)
    if entry is not None:
        _set_map(getattr(parent, leaf.name), entry, values, param=param, key=map_key)
    elif map_key is not None:
        raise FieldError(param, f'"{leaf.name}" ({_type(leaf)}) is not a map')
    elif leaf.is_repeated:
        _append(getattr(parent, leaf.name), [convert_scalar(leaf, v, param=param) for v in values])
    else:
        _assign(parent, leaf, _singular(leaf, values, param))


def _singular(field: FieldDescriptor, values: Sequence[str], param: str) -> object:
    if len(values) == 1:
        return convert_scalar(field, values[0], param=param)
    if _message_name(field) != "google.protobuf.ListValue":
        raise FieldError(param, f"given more than once, but {_type(field)} is not repeated")
    msg = _new(field)
    element = _subfield(field, "values")
    _append(msg.values, [convert_scalar(element, v, param=param) for v in values])
    return msg


def _set_map(
    container: Any, entry: Descriptor, values: Sequence[str], *, param: str, key: str | None
) -> None:
    if key is None:
        raise FieldError(param, f"a map takes entries as {param}[key]=value")
    if len(values) > 1:
        raise FieldError(param, "given more than once")
    try:
        converted_key = convert_scalar(entry.fields_by_name["key"], key, param=param)
    except FieldError as exc:
        raise FieldError(param, f"map key {exc.reason}") from None
    value = convert_scalar(entry.fields_by_name["value"], values[0], param=param)
    if isinstance(value, Message):
        container[converted_key].CopyFrom(value)
    else:
        container[converted_key] = value


def _append(container: Any, converted: list[object]) -> None:
    for value in converted:
        if isinstance(value, Message):
            container.add().CopyFrom(value)
        else:
            container.append(value)


def _assign(parent: Message, field: FieldDescriptor, value: object) -> None:
    if isinstance(value, Message):
        getattr(parent, field.name).CopyFrom(value)
    else:
        setattr(parent, field.name, value)


def _check_oneof(message: Message, field: FieldDescriptor, param: str) -> None:
    oneof = field.containing_oneof
    current = message.WhichOneof(oneof.name) if oneof is not None else None
    if oneof is not None and current not in (None, field.name):
        raise FieldError(param, f'"{current}" of oneof "{oneof.name}" is already set')


def _map_entry(field: FieldDescriptor) -> Descriptor | None:
    entry = field.message_type
    is_map = field.is_repeated and entry is not None and entry.GetOptions().map_entry
    return entry if is_map else None


# --- query parameters ----------------------------------------------------------------

_MAP_PARAM = re.compile(r"(?P<path>[^\[\]]+)\[(?P<key>.*)\]", re.DOTALL)


@dataclass(slots=True)
class _Group:
    param: str  # the first spelling seen, for errors
    path: tuple[FieldDescriptor, ...]
    map_key: str | None
    values: list[str]


def apply_query(
    message: Message,
    params: Sequence[tuple[str, str]],
    *,
    bound: Collection[tuple[str, ...]] = (),
    allow_unknown: bool = False,
) -> None:
    """Apply query parameters, in order, to `message`.

    Parameters naming the same field (by proto or JSON name) are gathered first,
    so `tags=a&tags=b` appends both and `name=a&name=b` is "given more than once".
    A parameter at or under a `bound` path (proto names, set from the path or the
    body) is ignored, like grpc-gateway's filter trie. A known field given once
    with an empty value is left unset: grpc-gateway's DefaultQueryParser drops such
    keys, so form-style clients can send `?page_size=`.
    """
    # The stubs type DESCRIPTOR as a union with upb's class, which is a Descriptor.
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    bound_paths = frozenset(bound)
    groups: dict[tuple[tuple[str, ...], str | None], _Group] = {}
    for name, value in params:
        target = _target(descriptor, name, bound_paths, allow_unknown)
        if target is not None:
            path, map_key = target
            key = (tuple(f.name for f in path), map_key)
            groups.setdefault(key, _Group(name, path, map_key, [])).values.append(value)
    for group in groups.values():
        if group.values != [""]:
            set_field(message, group.path, group.values, param=group.param, map_key=group.map_key)


def _target(
    descriptor: Descriptor, name: str, bound: frozenset[tuple[str, ...]], allow_unknown: bool
) -> tuple[tuple[FieldDescriptor, ...], str | None] | None:
    """The field path and map key `name` sets, or None when it is to be skipped."""
    match = _MAP_PARAM.fullmatch(name)
    dotted, map_key = (match["path"], match["key"]) if match else (name, None)
    if _is_bound(tuple(dotted.split(".")), bound):  # as written, e.g. `inner.whatever`
        return None
    try:
        path = resolve_path(descriptor, dotted, param=name)
    except UnknownParameter:
        if allow_unknown:
            return None
        raise
    if _is_bound(tuple(f.name for f in path), bound):  # JSON names of bound fields
        return None
    return path, map_key


def _is_bound(parts: tuple[str, ...], bound: frozenset[tuple[str, ...]]) -> bool:
    return bool(bound) and any(parts[:n] in bound for n in range(1, len(parts) + 1))
