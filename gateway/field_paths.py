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

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

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
    for index, part in enumerate(parts):
        if current is None:  # the previous part was not a plain singular message
            raise FieldError(
                param, f'cannot set sub-fields of "{path[-1].name}" ({type_words(path[-1])})'
            )
        found = lookup_field(current, part)
        if found is None:
            whole = index == len(parts) - 1 and param == dotted  # the param is this field
            raise UnknownParameter(param, _unknown(part, whole=whole))
        path.append(found)
        # google.protobuf.* messages are leaves: their JSON form is not an object of fields.
        leaf = found.is_repeated or message_name(found).startswith("google.protobuf.")
        current = None if leaf else found.message_type
    return tuple(path)


def _unknown(part: str, *, whole: bool) -> str:
    """The parameter names the unknown field, or the reason says which part it is."""
    if not part:
        return "empty field name"
    return "unknown field" if whole else f'unknown field "{part}"'


def lookup_field(descriptor: Descriptor, part: str) -> FieldDescriptor | None:
    """The field named `part`: proto name first, then json_name (query and body alike)."""
    # Proto names are ASCII, and upb's map raises SystemError on a lone surrogate.
    by_name = descriptor.fields_by_name.get(part) if part.isascii() else None
    if by_name is not None:
        return by_name
    return next((f for f in descriptor.fields if f.json_name == part), None)


def message_name(field: FieldDescriptor) -> str:
    return field.message_type.full_name if field.message_type is not None else ""


def type_words(field: FieldDescriptor) -> str:
    """A field's type in client-facing words, for error messages: `int32`, `Color`,
    `timestamp`, `array of string`, `map of string to Inner`.

    Messages and enums go by their package-relative names, the names of their
    OpenAPI schemas (gateway/openapi_schema.py), never a package-qualified one;
    the JSON-scalar well-known types by what their JSON form is; a wrapper by the
    type it wraps.
    """
    entry = map_entry(field)
    if entry is not None:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        return f"map of {type_words(key)} to {type_words(value)}"
    return f"array of {element_words(field)}" if field.is_repeated else element_words(field)


def element_words(field: FieldDescriptor) -> str:
    """The type of one value of `field` (one element if repeated), as type_words says."""
    if field.message_type is not None and field.message_type.file.name == _WRAPPERS_FILE:
        return element_words(field.message_type.fields_by_name["value"])
    named = field.message_type or field.enum_type
    return _TYPE_NAMES.get(field.type, "group") if named is None else named_words(named)


def named_words(named: Descriptor | EnumDescriptor) -> str:
    """A message or enum type as type_words names it: `Inner`, `Job.State`, `timestamp`."""
    words = _WELL_KNOWN_WORDS.get(named.full_name)
    if words is not None:
        return words
    package = named.file.package
    return named.full_name[len(package) + 1 :] if package else named.full_name


_WRAPPERS_FILE: Final = "google/protobuf/wrappers.proto"
_WELL_KNOWN_WORDS: Final = {
    "google.protobuf.Timestamp": "timestamp",
    "google.protobuf.Duration": "duration",
    "google.protobuf.FieldMask": "field mask",
    "google.protobuf.Struct": "JSON object",
    "google.protobuf.Value": "JSON value",
    "google.protobuf.ListValue": "JSON array",
    "google.protobuf.NullValue": "null",
}
_TYPE_NAMES: Final = {v: k[5:].lower() for k, v in vars(_FD).items() if k.startswith("TYPE_")}


def map_entry(field: FieldDescriptor) -> Descriptor | None:
    entry = field.message_type
    is_map = field.is_repeated and entry is not None and entry.GetOptions().map_entry
    return entry if is_map else None
