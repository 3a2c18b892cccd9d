"""Proto messages, enums and well-known types -> JSON Schema 2020-12 components.

The schemas describe the proto3 JSON mapping exactly as the gateway prints and parses
it (gateway/codec.py): `json_name` keys, 64-bit integers as strings, enums as value
names, well-known types in their JSON forms. A message becomes a component the first
time something references it; well-known types are inlined, being JSON scalars.

Component names are settled up front from every message the document can reach, so
`$ref`s never change afterwards: the name relative to the package (`Source`,
`Outer.Inner`), or the full name for every message whose short name collides.

Python's upb descriptors drop `source_code_info`, so comments come separately, from
a FileDescriptorSet built with `--include_source_info` (`comments_from_files`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.rpc import code_pb2

from gateway.options import read_extension

Schema = dict[str, Any]
Comments = Mapping[str, str]  # full name (fields: `pkg.Message.field`) -> comment
REF_PREFIX: Final = "#/components/schemas/"
HTTP_BODY: Final = "google.api.HttpBody"
# In a repeated field's rules (OpenApiConfig.field_rules), the keywords for the list
# itself; the others are each value's.
LIST_RULES: Final = "list"

_FD = FieldDescriptor
_INT32: Final[Schema] = {
    "type": "integer",
    "format": "int32",
    "minimum": -(2**31),
    "maximum": 2**31 - 1,
}
_UINT32: Final[Schema] = {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
_INT64: Final[Schema] = {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"}
_UINT64: Final[Schema] = {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"}
_FLOAT_WORDS: Final[Schema] = {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}

SCALARS: Final[Mapping[int, Schema]] = {
    **dict.fromkeys((_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32), _INT32),
    **dict.fromkeys((_FD.TYPE_UINT32, _FD.TYPE_FIXED32), _UINT32),
    **dict.fromkeys((_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64), _INT64),
    **dict.fromkeys((_FD.TYPE_UINT64, _FD.TYPE_FIXED64), _UINT64),
    _FD.TYPE_DOUBLE: {"anyOf": [{"type": "number", "format": "double"}, _FLOAT_WORDS]},
    _FD.TYPE_FLOAT: {"anyOf": [{"type": "number", "format": "float"}, _FLOAT_WORDS]},
    _FD.TYPE_BOOL: {"type": "boolean"},
    _FD.TYPE_STRING: {"type": "string"},
    _FD.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}

_WRAPPERS: Final = {
    "DoubleValue": _FD.TYPE_DOUBLE, "FloatValue": _FD.TYPE_FLOAT,
    "Int64Value": _FD.TYPE_INT64, "UInt64Value": _FD.TYPE_UINT64,
    "Int32Value": _FD.TYPE_INT32, "UInt32Value": _FD.TYPE_UINT32,
    "BoolValue": _FD.TYPE_BOOL, "StringValue": _FD.TYPE_STRING, "BytesValue": _FD.TYPE_BYTES,
}  # fmt: skip

# The JSON forms of google.protobuf's well-known types (proto3 JSON mapping table).
WELL_KNOWN: Final[Mapping[str, Schema]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$",
        "description": "Seconds with an `s` suffix, e.g. `1.5s`.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths in lowerCamelCase.",
    },
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
    **{f"google.protobuf.{name}": {"anyOf": [SCALARS[kind], {"type": "null"}]}
       for name, kind in _WRAPPERS.items()},
}  # fmt: skip
_NULL_VALUE: Final = "google.protobuf.NullValue"

# The two error bodies gateway/errors.py writes.
ERROR_SCHEMA: Final[Schema] = {
    "type": "object",
    "description": "A google.rpc.Status: message, code name and typed details.",
    "properties": {
        "error": {"type": "string", "description": "What went wrong."},
        "code": {"type": "string", "enum": sorted(code_pb2.Code.keys())},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"@type": {"type": "string"}},
                "required": ["@type"],
            },
        },
    },
    "required": ["error", "code", "details"],
}
OAUTH_ERROR_SCHEMA: Final[Schema] = {
    "type": "object",
    "description": "An RFC 6749 section 5.2 error.",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    "required": ["error", "error_description"],
}


def character_class(chars: Iterable[str], *, negated: bool = False) -> str:
    """An ECMA-262 character class (`[...]`, or `[^...]`) of exactly `chars`, each
    written `\\uXXXX` and runs as ranges, so a pattern in a document can be built
    from the very set a check uses. Characters beyond the BMP are not supported."""
    codes = sorted({ord(c) for c in chars})
    if any(code > 0xFFFF for code in codes):
        raise ValueError("character_class covers the Basic Multilingual Plane only")
    runs: list[tuple[int, int]] = []
    for code in codes:
        if runs and runs[-1][1] == code - 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    parts = "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in runs
    )
    return f"[{'^' if negated else ''}{parts}]"


# The gateway reads a Duration's seconds as up to 12 digits, nanoseconds as up to 9
# (gateway/scalars.py); a pattern of a range keeps to the same shape.
DURATION_SECONDS_DIGITS: Final = 12
DURATION_FRACTION_DIGITS: Final = 9


def duration_pattern(maximum: int, *, positive: bool = False) -> str:
    """An anchored ECMA-262 pattern of the Duration JSON strings (`1.5s`) from 0s (or,
    `positive`, just above it) to `maximum` whole seconds inclusive, leading zeros as
    the gateway reads them: the range a check enforces, stated where JSON Schema can
    only compare strings (proto3 JSON mapping, Duration)."""
    digits = str(maximum)
    frac = f"(?:\\.[0-9]{{1,{DURATION_FRACTION_DIGITS}}})?"
    zeros = f"(?:\\.0{{1,{DURATION_FRACTION_DIGITS}}})?"

    def padded(width: int, body: str) -> str:
        return f"0{{0,{DURATION_SECONDS_DIGITS - width}}}{body}"

    below: list[str] = []
    for width in range(1, len(digits)):
        body = "[1-9]" + (f"[0-9]{{{width - 1}}}" if width > 1 else "")
        below.append(padded(width, body))
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0  # zero is its own alternative below
        if int(digit) > low:
            rest = len(digits) - i - 1
            body = digits[:i] + f"[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            below.append(padded(len(digits), body))
    alternatives = [f"(?:{'|'.join(below)}){frac}"] if below else []
    if positive:  # zero seconds only with a fraction that is not all zeros
        nonzero = "|".join(
            f"0{{{k}}}[1-9][0-9]{{0,{DURATION_FRACTION_DIGITS - k - 1}}}"
            for k in range(DURATION_FRACTION_DIGITS)
        )
        alternatives.append(f"0{{1,{DURATION_SECONDS_DIGITS}}}\\.(?:{nonzero})")
    else:
        alternatives.append(f"0{{1,{DURATION_SECONDS_DIGITS}}}{frac}")
    alternatives.append(padded(len(digits), digits) + zeros)
    return f"^(?:{'|'.join(alternatives)})s$"


def field_behaviors(field: FieldDescriptor) -> frozenset[int]:
    found = read_extension(field.GetOptions(), field_behavior_pb2.field_behavior)
    return frozenset(found or ())


def map_value(field: FieldDescriptor) -> FieldDescriptor | None:
    """The value field of a map's entry, or None when `field` is not a map."""
    entry = field.message_type
    is_map = field.is_repeated and entry is not None and entry.GetOptions().map_entry
    return entry.fields_by_name["value"] if is_map and entry is not None else None


def is_leaf_message(descriptor: Descriptor) -> bool:
    """google.protobuf.* messages print as JSON scalars or free JSON, never as fields."""
    return descriptor.full_name in WELL_KNOWN


def comments_from_files(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """Leading comments by full name, from files built with `--include_source_info`.

    AIP hidden comments, `(-- ... --)`, are internal remarks and are dropped.
    """
    comments: dict[str, str] = {}
    for file in files:
        names = dict(_named_paths(file))
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = _clean_comment(location.leading_comments)
            if name is not None and text:
                comments[name] = text
    return comments


def _named_paths(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """source_code_info paths: file message_type=4, enum_type=5, service=6; message
    field=2, nested_type=3, enum_type=4; enum value=2; service method=2."""
    prefix = f"{file.package}." if file.package else ""
    for i, message in enumerate(file.message_type):
        yield from _message_paths(message, (4, i), prefix + message.name)
    for i, enum in enumerate(file.enum_type):
        yield from _enum_paths(enum, (5, i), prefix + enum.name)
    for i, service in enumerate(file.service):
        yield (6, i), prefix + service.name
        for j, method in enumerate(service.method):
            yield (6, i, 2, j), f"{prefix}{service.name}.{method.name}"


def _message_paths(
    message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], name: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, name
    for i, field in enumerate(message.field):
        yield (*path, 2, i), f"{name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        yield from _message_paths(nested, (*path, 3, i), f"{name}.{nested.name}")
    for i, enum in enumerate(message.enum_type):
        yield from _enum_paths(enum, (*path, 4, i), f"{name}.{enum.name}")


def _enum_paths(
    enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], name: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, name
    for i, value in enumerate(enum.value):
        yield (*path, 2, i), f"{name}.{value.name}"


_HIDDEN = re.compile(r"\(--.*?--\)", re.DOTALL)


def _clean_comment(text: str) -> str:
    lines = [line.removeprefix(" ").rstrip() for line in _HIDDEN.sub("", text).splitlines()]
    return "\n".join(lines).strip()


def reachable(roots: Iterable[Descriptor]) -> dict[str, Descriptor | EnumDescriptor]:
    """Every message and enum that can appear in documents about `roots`, by full name."""
    found: dict[str, Descriptor | EnumDescriptor] = {}
    stack: list[Descriptor] = list(roots)
    while stack:
        message = stack.pop()
        if message.full_name in found or is_leaf_message(message):
            continue
        found[message.full_name] = message
        for field in message.fields:
            if field.enum_type is not None and field.enum_type.full_name != _NULL_VALUE:
                found.setdefault(field.enum_type.full_name, field.enum_type)
            if field.message_type is not None:
                stack.append(field.message_type)
    return found


def component_names(
    types: Iterable[Descriptor | EnumDescriptor], reserved: Iterable[str] = ()
) -> dict[str, str]:
    """full name -> component name: package-relative, or full where names collide."""
    short = {t.full_name: _relative_name(t) for t in types}
    taken: dict[str, int] = dict.fromkeys(reserved, 1)
    for name in short.values():
        taken[name] = taken.get(name, 0) + 1
    return {full: name if taken[name] == 1 else full for full, name in short.items()}


def _relative_name(named: Descriptor | EnumDescriptor) -> str:
    package = named.file.package
    return named.full_name[len(package) + 1 :] if package else named.full_name


class SchemaRegistry:
    """Builds component schemas on first reference, under names fixed in advance."""

    def __init__(
        self,
        names: Mapping[str, str],
        comments: Comments | None = None,
        rules: Callable[[FieldDescriptor], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self._names = names
        self._comments = comments or {}
        self._rules = rules
        self._schemas: dict[str, Schema] = {}

    def ruled(self, field: FieldDescriptor, schema: Schema) -> Schema:
        """`schema` (one value of `field`) with the API owner's rules for the field
        (OpenApiConfig.field_rules) merged in; those under LIST_RULES are the list's."""
        rules = self._rules(field) if self._rules is not None else None
        values = {k: v for k, v in (rules or {}).items() if k != LIST_RULES}
        return {**schema, **copy.deepcopy(values)} if values else schema

    def _listed(self, field: FieldDescriptor, schema: Schema) -> Schema:
        """A repeated field's array `schema` with the owner's rules for the list."""
        rules = self._rules(field) if self._rules is not None else None
        listed = (rules or {}).get(LIST_RULES)
        return {**schema, **copy.deepcopy(dict(listed))} if listed else schema

    def components(self) -> dict[str, Schema]:
        return {name: self._schemas[name] for name in sorted(self._schemas)}

    def add(self, name: str, schema: Schema) -> Schema:
        """A hand-written component (the error bodies); returns its `$ref`."""
        self._schemas.setdefault(name, copy.deepcopy(schema))
        return {"$ref": REF_PREFIX + name}

    def message(self, descriptor: Descriptor) -> Schema:
        """A `$ref` to the message's component, or the inline JSON form of a WKT."""
        if is_leaf_message(descriptor):
            return copy.deepcopy(dict(WELL_KNOWN[descriptor.full_name]))
        name = self._names[descriptor.full_name]
        if name not in self._schemas:
            self._schemas[name] = {}  # recursion stops at the placeholder
            self._schemas[name] = self.object_schema(descriptor)
        return {"$ref": REF_PREFIX + name}

    def enum(self, descriptor: EnumDescriptor) -> Schema:
        """Value names, as printed; value comments become a list in the description."""
        if descriptor.full_name == _NULL_VALUE:
            return {"type": "null"}
        name = self._names[descriptor.full_name]
        if name not in self._schemas:
            schema: Schema = {"type": "string", "enum": [v.name for v in descriptor.values]}
            notes = {
                v.name: self._comments.get(f"{descriptor.full_name}.{v.name}")
                for v in descriptor.values
            }
            listed = "\n".join(f"- `{value}`: {note}" for value, note in notes.items() if note)
            text = "\n\n".join(filter(None, [self._comments.get(descriptor.full_name), listed]))
            if text:
                schema["description"] = text
            self._schemas[name] = schema
        return {"$ref": REF_PREFIX + name}

    def object_schema(
        self, descriptor: Descriptor, exclude: Iterable[str] = (), *, closed: bool = True
    ) -> Schema:
        """The message as a JSON object, without the proto fields named in `exclude`.

        `closed` (the default) says `additionalProperties: false`: the gateway refuses
        a body key that names no field (400 naming it, gateway/codec.py); an open
        schema is for a body whose unknown names the method ignores (a form under
        `allow_unknown_query_parameters`, gateway/request.py). The proto field names
        (`source_type` beside `sourceType`) are accepted too, as the proto3 JSON
        mapping asks of parsers, but only the JSON names are documented.
        """
        skipped = frozenset(exclude)
        ordered = sorted(descriptor.fields, key=lambda f: f.number)
        fields = [f for f in ordered if f.name not in skipped]
        schema: Schema = {"type": "object", "properties": {}}
        for field in fields:
            schema["properties"][field.json_name] = self.property(field)
        required = [f.json_name for f in fields if _REQUIRED in field_behaviors(f)]
        if required:
            schema["required"] = required
        if closed:
            schema["additionalProperties"] = False
        rules, notes = _oneof_rules(descriptor, fields)
        schema.update(rules)
        described = self._described(schema, descriptor.full_name)
        if notes:
            text = described.get("description", "")
            described["description"] = "\n\n".join(filter(None, [text, *notes]))
        return described

    def property(self, field: FieldDescriptor) -> Schema:
        """A field as an object property: REQUIRED also means non-empty (AIP-203), since
        proto3 JSON cannot tell an empty string or list from an unset one."""
        schema = self.field(field)
        behaviors = field_behaviors(field)
        if _REQUIRED in behaviors and schema.get("type") in ("string", "array"):
            schema["minLength" if schema["type"] == "string" else "minItems"] = 1
        if _OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if _INPUT_ONLY in behaviors:
            schema["writeOnly"] = True
        if field.GetOptions().deprecated:
            schema["deprecated"] = True
        return self._described(schema, field.full_name)

    def field(self, field: FieldDescriptor) -> Schema:
        """The JSON form of a field: maps are objects, repeated fields arrays; the
        owner's rules apply to each value."""
        value = map_value(field)
        if value is not None:
            return {"type": "object", "additionalProperties": self.single(value)}
        if field.is_repeated:
            array = {"type": "array", "items": self.ruled(field, self.single(field))}
            return self._listed(field, array)
        return self.ruled(field, self.single(field))

    def single(self, field: FieldDescriptor) -> Schema:
        """One value of the field's type, ignoring repetition."""
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return copy.deepcopy(dict(SCALARS[field.type]))

    def _described(self, schema: Schema, full_name: str) -> Schema:
        text = self._comments.get(full_name)
        if text:
            schema["description"] = text
        return schema


_REQUIRED: Final = field_behavior_pb2.REQUIRED
_OUTPUT_ONLY: Final = field_behavior_pb2.OUTPUT_ONLY
_INPUT_ONLY: Final = field_behavior_pb2.INPUT_ONLY


def _oneof_rules(descriptor: Descriptor, fields: list[FieldDescriptor]) -> tuple[Schema, list[str]]:
    """At most one member of each real oneof (JSON parsing refuses two: 400), as a
    `not` over every pair, and a sentence for the description."""
    synthetic = _synthetic_oneofs(descriptor)
    rules: list[Schema] = []
    notes: list[str] = []
    for oneof in descriptor.oneofs:
        names = {f.name for f in oneof.fields}
        members = [f.json_name for f in fields if f.name in names]
        if oneof.name in synthetic or len(members) < 2:
            continue
        notes.append(f"Oneof `{oneof.name}`: at most one of `{'`, `'.join(members)}`.")
        pairs = [[a, b] for i, a in enumerate(members) for b in members[i + 1 :]]
        rules.extend({"required": pair} for pair in pairs)
    return ({"not": {"anyOf": rules}} if rules else {}), notes


def _synthetic_oneofs(descriptor: Descriptor) -> frozenset[str]:
    """proto3 `optional` fields sit in synthetic oneofs, which are not choices."""
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    indexes = {f.oneof_index for f in proto.field if f.proto3_optional}
    return frozenset(proto.oneof_decl[i].name for i in indexes)
