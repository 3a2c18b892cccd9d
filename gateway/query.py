"""Set message fields from strings: path captures and query parameters.

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

Values arrive percent-decoded (`parse_query`, `parse_form`): strictly as UTF-8, as
paths are, so `?x=%FF` is refused naming `x` rather than read as U+FFFD (urllib's
parse_qsl replaces). A bad parameter raises FieldError, and nothing else escapes
whatever the names and values (tests/unit/gateway/test_fields.py fuzzes it).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway.errors import GatewayError, status_error
from gateway.field_paths import (
    FieldError,
    UnknownParameter,
    element_words,
    map_entry,
    message_name,
    resolve_path,
    type_words,
)
from gateway.scalars import convert_scalar, new_message, subfield

UNDECODABLE = "percent-escapes do not decode to UTF-8"


def parse_query(raw: bytes) -> list[tuple[str, str]]:
    """A raw query string's name=value pairs, in order (WHATWG URL §5.1
    application/x-www-form-urlencoded parsing: `&` separates, `+` is a space, empty
    pieces are skipped, a piece without `=` has an empty value), decoded as UTF-8.

    Raises GatewayError 400 (reason INVALID_QUERY_PARAMETER) naming the parameter,
    as written when its name is what fails: `invalid parameter "x": percent-escapes
    do not decode to UTF-8`.
    """
    return _pairs(raw.split(b"&"), "INVALID_QUERY_PARAMETER")


def parse_form(text: str) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body's pairs, as `parse_query` (the body is
    UTF-8 already; its escapes must be too). Raises GatewayError 400 (reason
    INVALID_FORM_FIELD) naming the field."""
    return _pairs([piece.encode() for piece in text.split("&")], "INVALID_FORM_FIELD")


def _pairs(pieces: Sequence[bytes], reason: str) -> list[tuple[str, str]]:
    pairs = []
    for piece in pieces:
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition(b"=")
        name = _decode(raw_name)
        if name is None:
            shown = raw_name.decode("utf-8", "backslashreplace")
            raise _undecodable(shown, reason)
        value = _decode(raw_value)
        if value is None:
            raise _undecodable(name, reason)
        pairs.append((name, value))
    return pairs


def _decode(part: bytes) -> str | None:
    """`part` with `+` as a space and its percent-escapes decoded; None unless UTF-8."""
    if b"%" in part or b"+" in part:
        part = unquote_to_bytes(part.replace(b"+", b" "))
    try:
        return part.decode()
    except UnicodeDecodeError:
        return None


def _undecodable(name: str, reason: str) -> GatewayError:
    error = FieldError(name, UNDECODABLE)
    return status_error(code_pb2.INVALID_ARGUMENT, str(error), field_name=name, reason=reason)


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
    entry = map_entry(leaf)
    if entry is not None:
        _set_map(getattr(parent, leaf.name), entry, values, param=param, key=map_key)
    elif map_key is not None:
        raise FieldError(param, f'"{leaf.name}" ({type_words(leaf)}) is not a map')
    elif leaf.is_repeated:
        _append(getattr(parent, leaf.name), [convert_scalar(leaf, v, param=param) for v in values])
    else:
        _assign(parent, leaf, _singular(leaf, values, param))


def _singular(field: FieldDescriptor, values: Sequence[str], param: str) -> object:
    if len(values) == 1:
        return convert_scalar(field, values[0], param=param)
    if message_name(field) != "google.protobuf.ListValue":
        raise FieldError(
            param, f"given more than once, but the field takes a single {element_words(field)}"
        )
    msg = new_message(field)
    element = subfield(field, "values")
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
    empty_items: bool = False,
) -> None:
    """Apply query parameters, in order, to `message`.

    Parameters naming the same field (by proto or JSON name) are gathered first,
    so `tags=a&tags=b` appends both and `name=a&name=b` is "given more than once".
    A parameter at or under a `bound` path (proto names, set from the path or the
    body) is ignored, like grpc-gateway's filter trie. A known field given once
    with an empty value is left unset: grpc-gateway's DefaultQueryParser drops such
    keys, so form-style clients can send `?page_size=`. With `empty_items` (a form
    body, whose schema is the JSON body's) a repeated field given once empty is one
    empty item, as in JSON `[""]`, and its items' checks apply.
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
        leaf = group.path[-1]
        listed = empty_items and leaf.is_repeated and map_entry(leaf) is None
        if group.values != [""] or listed:
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
