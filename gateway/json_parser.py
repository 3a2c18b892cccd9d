"""Decoded JSON request bodies -> protobuf messages, through the query's converters.

The proto3 JSON mapping (protobuf.dev/programming-guides/json) says which JSON
type each field takes; the values themselves go through gateway/scalars.py, the
converters that read path captures and query parameters. So `"QUJD!!!"` is refused
as bytes in a body as in a query, `4294967297` is out of range for an int32 or an
enum wherever it is written, and a Timestamp or Duration one place accepts the
other accepts too. (json_format, used before, silently dropped invalid base64
characters, narrowed enum numbers modulo 2^32, and worded errors in its own terms.)

What each field takes:

- integers and enums: a JSON number (integral: `1e2` is 100) or a string;
  enums by name, or by a number the enum declares;
- float and double: a number, or a string (`"NaN"`, `"Infinity"`, `"1.5"`);
- bool: `true` or `false`; string: a string; bytes: base64 in a string;
- Timestamp, Duration, FieldMask: their string forms; wrappers: the wrapped value;
- Struct, Value, ListValue: free JSON; Any: `{"@type": ..., ...}`;
- other messages: an object whose keys are proto or JSON field names (proto name
  first, as query parameters); repeated fields: an array; maps: an object;
- `null`: the field stays unset (for Value: JSON null), never inside arrays.

No string, member name or value, may hold a lone surrogate: JSON's `\\ud800`
escape decodes to one, and it is no Unicode character (RFC 8259 §8.2), so no
protobuf string can carry it. Free JSON (Struct, Value, ListValue) nests at most
MAX_FREE_DEPTH arrays and objects: upb's wire decoder takes 100 nested messages
(json_format as many), an object costs three (Struct, its map entry, Value), an
array two, and 30 levels leave room for the request messages around the field.
Deeper documents once failed upstream as a 500, or said "expected a JSON value".
Free JSON carries every number as a double, so an integer beyond 2^53 (which a double
does not hold exactly: 9007199254740993 would arrive as 9007199254740992) is refused,
naming its path, with a hint to send it as a string; `1.0` and `1e20` pass as doubles.

Every refusal is a FieldError whose `param` is the path of the offending value in
the request message, keys as the caller wrote them: `inner.count`, `tags[1]`,
`labels[env]`, and whose reason is in our words, types named as a client sees them
(`Inner`, `timestamp`, `array of string`: field_paths.type_words). Nothing else
escapes, whatever the document.
"""

from __future__ import annotations

import json
from typing import Any, Final, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.errors import encodable
from gateway.field_paths import (
    FieldError,
    UnknownParameter,
    element_words,
    lookup_field,
    map_entry,
    type_words,
)
from gateway.scalars import (
    EXACT_INTEGER,
    INEXACT_INTEGER,
    convert_number,
    convert_scalar,
    form_of,
    new_message,
)
from gateway.text import excerpt, quoted_excerpt

_FD = FieldDescriptor
_WRAPPERS_FILE: Final = "google/protobuf/wrappers.proto"
_STRING_FORMS: Final = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
# Free JSON, and Any (its "@type" names a message json_format resolves): parsed by
# json_format, whose errors are replaced by ours.
_FREE_JSON: Final = {
    "google.protobuf.Struct": "a JSON object",
    "google.protobuf.Value": "a JSON value",
    "google.protobuf.ListValue": "a JSON array",
    "google.protobuf.Any": 'a JSON object with "@type" naming a known message',
}
_NESTED_FREE_JSON: Final = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
MAX_FREE_DEPTH: Final = 30
LONE_SURROGATE: Final = "is not valid Unicode (a lone surrogate escape)"
_NULL_TAKERS: Final = frozenset({"google.protobuf.Value", "google.protobuf.NullValue"})
_JSON_ERRORS: Final = (
    json_format.ParseError,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
    RecursionError,
)


def merge_object(message: Message, document: dict[str, Any], *, path: str = "") -> None:
    """Set `message`'s fields from a JSON object; `path` prefixes every error's `param`."""
    # The stubs type DESCRIPTOR as a union with upb's class, which is a Descriptor.
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    written: dict[str, str] = {}  # field name -> the key that set it
    for key, value in document.items():
        if not _is_unicode(key):
            raise FieldError(_join(path, encodable(key)), f"member name {LONE_SURROGATE}")
        where = _join(path, key)
        field = lookup_field(descriptor, key)
        if field is None:
            raise UnknownParameter(where, "unknown field")
        if field.name in written:
            raise FieldError(where, f'the same field as "{written[field.name]}", given twice')
        written[field.name] = key
        if value is None and not _takes_null(field):
            continue  # null means the default: the field stays unset
        _check_oneof(message, field, written, where)
        set_value(message, field, value, path=where)


def set_value(message: Message, field: FieldDescriptor, value: Any, *, path: str) -> None:
    """Set one field of `message` from its decoded JSON value (a body of one field)."""
    if value is None and not _takes_null(field):
        return
    entry = map_entry(field)
    if entry is not None:
        _set_map(getattr(message, field.name), field, entry, value, path)
    elif field.is_repeated:
        _set_list(getattr(message, field.name), field, value, path)
    elif field.message_type is not None:
        _merge_message(getattr(message, field.name), field, value, path)
    else:
        setattr(message, field.name, _scalar(field, value, path))


def _set_map(
    container: Any, field: FieldDescriptor, entry: Descriptor, value: Any, where: str
) -> None:
    if not isinstance(value, dict):
        raise _wrong_type(where, f"a JSON object ({type_words(field)})", value)
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    for key, item in value.items():
        if not _is_unicode(key):
            raise FieldError(f"{where}[{encodable(key)}]", f"map key {LONE_SURROGATE}")
        at = f"{where}[{_member(key)}]"
        try:
            converted = convert_scalar(key_field, key, param=at)
        except FieldError as exc:
            raise FieldError(at, f"map key {exc.reason}") from None
        if item is None and not _takes_null(value_field):
            raise FieldError(at, "null is not a map value")
        if value_field.message_type is not None:
            _merge_message(container[converted], value_field, item, at)
        else:
            container[converted] = _scalar(value_field, item, at)


def _set_list(container: Any, field: FieldDescriptor, value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise _wrong_type(where, f"a JSON array of {element_words(field)}", value)
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        if item is None and not _takes_null(field):
            raise FieldError(at, "null is not a list element")
        if field.message_type is not None:
            _merge_message(container.add(), field, item, at)
        else:
            container.append(_scalar(field, item, at))


def _merge_message(target: Any, field: FieldDescriptor, value: Any, where: str) -> None:
    """Merge `value` into `target`, a message of `field`'s type (one element if repeated)."""
    descriptor = cast(Descriptor, field.message_type)
    name = descriptor.full_name
    if name in _STRING_FORMS or descriptor.file.name == _WRAPPERS_FILE:
        target.CopyFrom(_scalar(field, value, where))
    elif name in _FREE_JSON:
        nested = name in _NESTED_FREE_JSON
        _check_free(value, where, 0 if nested else None, root=where, exact=nested)
        try:
            json_format.ParseDict(value, target)
        except _JSON_ERRORS:
            raise _wrong_type(where, _FREE_JSON[name], value) from None
    elif isinstance(value, dict):
        target.SetInParent()  # `{}` still sets the field
        merge_object(target, value, path=where)
    else:
        raise _wrong_type(where, f"a JSON object ({element_words(field)})", value)


def _scalar(field: FieldDescriptor, value: Any, where: str) -> Any:
    """A JSON scalar through the query's converters; JSON types as the mapping says."""
    if isinstance(value, str) and not _is_unicode(value):
        raise FieldError(where, f"value {LONE_SURROGATE}")
    if _kind(field) == _FD.TYPE_BOOL:
        if isinstance(value, bool):
            return _wrap(field, value)
        raise _wrong_type(where, "true or false", value)
    if isinstance(value, str):
        return convert_scalar(field, value, param=where)
    if value is None:  # only google.protobuf.NullValue gets here
        return 0
    if isinstance(value, int | float) and not isinstance(value, bool):  # bool is an int
        return convert_number(field, value, param=where)
    raise _wrong_type(where, form_of(field), value)


def _check_free(
    value: Any, where: str, depth: int | None, *, root: str, exact: bool = False
) -> None:
    """Raise FieldError for a lone surrogate anywhere in free JSON (naming its path:
    `attrs.k[2]`), when `exact`, for an integer beyond 2^53 (which a Struct/Value
    would carry changed, as a double: scalars.INEXACT_INTEGER), or, when `depth`
    counts, for arrays and objects nested more than MAX_FREE_DEPTH deep (naming
    `root`, the field). Other numbers and literals pass."""
    if isinstance(value, str):
        if not _is_unicode(value):
            raise FieldError(where, f"value {LONE_SURROGATE}")
        return
    if exact and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > EXACT_INTEGER:
            raise FieldError(where, f"{excerpt(str(value))} {INEXACT_INTEGER}")
        return
    if not isinstance(value, dict | list):
        return
    if depth is not None:
        depth += 1
        if depth > MAX_FREE_DEPTH:
            raise FieldError(
                root, f"nested too deeply: at most {MAX_FREE_DEPTH} levels of arrays and objects"
            )
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_free(item, f"{where}[{index}]", depth, root=root, exact=exact)
        return
    for key, item in value.items():
        if not _is_unicode(key):
            raise FieldError(_join(where, encodable(key)), f"member name {LONE_SURROGATE}")
        _check_free(item, _join(where, key), depth, root=root, exact=exact)


def _is_unicode(text: str) -> bool:
    """False when `text` holds a lone surrogate (what UTF-8 cannot encode)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _kind(field: FieldDescriptor) -> int:
    """The field's type, or for a wrapper the type of its `value`."""
    message = field.message_type
    if message is not None and message.file.name == _WRAPPERS_FILE:
        return int(message.fields_by_name["value"].type)
    return int(field.type)


def _wrap(field: FieldDescriptor, value: bool) -> Any:
    if field.message_type is None:
        return value
    msg = new_message(field)
    msg.value = value
    return msg


def _takes_null(field: FieldDescriptor) -> bool:
    named = field.message_type or field.enum_type
    return named is not None and named.full_name in _NULL_TAKERS


def _check_oneof(
    message: Message, field: FieldDescriptor, written: dict[str, str], where: str
) -> None:
    oneof = field.containing_oneof
    if oneof is None:
        return
    current = message.WhichOneof(oneof.name)
    if current is not None and current != field.name:
        other = written.get(current, current)
        raise FieldError(where, f'"{other}" of oneof "{oneof.name}" is already set')


def _wrong_type(where: str, expected: str, value: Any) -> FieldError:
    return FieldError(where, f"expected {expected}, got {json_kind(value)}")


def json_kind(value: Any) -> str:
    """A JSON value in words for error texts: `null`, `an array`, `the number 5`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {excerpt(json.dumps(value))}"
    if isinstance(value, str):
        return f"the string {quoted_excerpt(value)}"
    return "an array" if isinstance(value, list) else "an object"


def _join(path: str, key: str) -> str:
    return f"{path}.{_member(key)}" if path else _member(key)


def _member(key: str) -> str:
    """A member name or map key as an error's path shows it: a caller's key is theirs
    to make long, the message stays short (its first 64 characters, `…`, its length)."""
    return key if len(key) <= 64 else f"{key[:64]}…({len(key)} characters)"
