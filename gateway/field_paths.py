"""Dotted field paths of request messages: `inner.label` -> field descriptors.

A path names one field at a time from the request message; each part may be the
proto name or the `json_name` (proto name first, as grpc-gateway's
DefaultQueryParser does). Only plain singular messages can be stepped into:
repeated fields, maps and google.protobuf.* messages (whose JSON form is not an
object of fields) end a path. Errors are FieldError (UnknownParameter when no
field has the name), naming the parameter as the caller wrote it; the other
modules that set fields from strings (gateway/scalars.py, gateway/query.py)
raise the same.
"""

from __future__ import annotations

from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_FD = FieldDescriptor


class FieldError(ValueError):
    """A parameter that cannot be applied; `param` is the name as the caller wrote it."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f'invalid parameter "{param}": {reason}')
        self.param = param
        self.reason = reason


class UnknownParameter(FieldError):
    """No field of the message has this name, neither as proto name nor as json_name."""


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
                param, f'cannot set sub-fields of "{path[-1].name}" ({proto_type(path[-1])})'
            )
        found = lookup_field(current, part)
        if found is None:
            raise UnknownParameter(param, f'no field "{part}" in {current.full_name}')
        path.append(found)
        # google.protobuf.* messages are leaves: their JSON form is not an object of fields.
        leaf = found.is_repeated or message_name(found).startswith("google.protobuf.")
        current = None if leaf else found.message_type
    return tuple(path)


def lookup_field(descriptor: Descriptor, part: str) -> FieldDescriptor | None:
    """The field named `part`: proto name first, then json_name (query and body alike)."""
    # Proto names are ASCII, and upb's map raises SystemError on a lone surrogate.
    by_name = descriptor.fields_by_name.get(part) if part.isascii() else None
    if by_name is not None:
        return by_name
    return next((f for f in descriptor.fields if f.json_name == part), None)


def message_name(field: FieldDescriptor) -> str:
    return field.message_type.full_name if field.message_type is not None else ""


def proto_type(field: FieldDescriptor) -> str:
    """The type as a .proto file spells it, for error messages."""
    entry = map_entry(field)
    if entry is not None:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map<{proto_type(key)}, {proto_type(value)}>"
    named = field.message_type or field.enum_type
    base = named.full_name if named is not None else _TYPE_NAMES.get(field.type, "group")
    return f"repeated {base}" if field.is_repeated else base


_TYPE_NAMES: Final = {v: k[5:].lower() for k, v in vars(_FD).items() if k.startswith("TYPE_")}


def map_entry(field: FieldDescriptor) -> Descriptor | None:
    entry = field.message_type
    is_map = field.is_repeated and entry is not None and entry.GetOptions().map_entry
    return entry if is_map else None
