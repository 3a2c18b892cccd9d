"""gateway/json_printer.py: descriptor-built printers that equal json_format, only faster.

The reference is `json_format.MessageToDict(m, always_print_fields_with_no_presence=True)`,
which the gateway printed with before. Hand-picked cases pin exact dicts (and, through
`json.dumps`, key order); property tests draw random messages from the descriptors and
require equal values and byte-identical `json.dumps` (so also equal key order and types).
`Odd` (built below in its own pool) adds what the product protos lack: fields declared
out of number order, proto2 presence and defaults, closed enums, extensions, int and
bool map keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from google.api import httpbody_pb2
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    json_format,
    message_factory,
    struct_pb2,
    text_format,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import json_printer
from gateway.json_printer import printer_for, to_jsonable
from orchestrator.jobengine.v1 import source_pb2, sources_service_pb2
from tests.support import protos

echo_pb2 = protos.echo_pb2()
Kitchen = echo_pb2.Kitchen
Inner = echo_pb2.Inner
Source = source_pb2.Source
ListSourcesResponse = sources_service_pb2.ListSourcesResponse
Timestamp = timestamp_pb2.Timestamp
Duration = duration_pb2.Duration

_ODD_PROTOS = [
    """
    name: "odd/v1/shuffled.proto" package: "odd.v1" syntax: "proto3"
    message_type {
      name: "Shuffled"
      field { name: "zeta" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING }
      field { name: "alpha" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
      field { name: "child" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
              type_name: ".odd.v1.Shuffled" }
      field { name: "by_int" number: 5 label: LABEL_REPEATED type: TYPE_MESSAGE
              type_name: ".odd.v1.Shuffled.ByIntEntry" }
      field { name: "by_flag" number: 4 label: LABEL_REPEATED type: TYPE_MESSAGE
              type_name: ".odd.v1.Shuffled.ByFlagEntry" }
      field { name: "by_u64" number: 6 label: LABEL_REPEATED type: TYPE_MESSAGE
              type_name: ".odd.v1.Shuffled.ByU64Entry" }
      field { name: "sf32" number: 8 label: LABEL_OPTIONAL type: TYPE_SFIXED32 }
      field { name: "sf64" number: 7 label: LABEL_OPTIONAL type: TYPE_SFIXED64 }
      field { name: "fx32" number: 10 label: LABEL_OPTIONAL type: TYPE_FIXED32 }
      field { name: "si64" number: 9 label: LABEL_OPTIONAL type: TYPE_SINT64 }
      field { name: "floats" number: 11 label: LABEL_REPEATED type: TYPE_FLOAT }
      field { name: "blobs" number: 12 label: LABEL_REPEATED type: TYPE_BYTES }
      nested_type { name: "ByIntEntry" options { map_entry: true }
        field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
        field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_DOUBLE } }
      nested_type { name: "ByFlagEntry" options { map_entry: true }
        field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL }
        field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_BYTES } }
      nested_type { name: "ByU64Entry" options { map_entry: true }
        field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_UINT64 }
        field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
                type_name: ".odd.v1.Shuffled" } }
    }
    """,
    """
    name: "odd/v1/legacy.proto" package: "odd.v1" syntax: "proto2"
    enum_type { name: "Mood" value { name: "CALM" number: 1 } value { name: "CROSS" number: 2 } }
    message_type {
      name: "Plain"
      field { name: "count" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32
              default_value: "7" }
      field { name: "mood" number: 2 label: LABEL_OPTIONAL type: TYPE_ENUM
              type_name: ".odd.v1.Mood" }
      field { name: "moods" number: 3 label: LABEL_REPEATED type: TYPE_ENUM
              type_name: ".odd.v1.Mood" }
      field { name: "key" number: 4 label: LABEL_REQUIRED type: TYPE_STRING }
    }
    message_type {
      name: "Legacy"
      field { name: "count" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
      extension_range { start: 100 end: 200 }
    }
    extension { name: "extra" number: 100 label: LABEL_OPTIONAL type: TYPE_INT32
                extendee: ".odd.v1.Legacy" }
    """,
]


def _odd_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for text in _ODD_PROTOS:
        pool.Add(text_format.Parse(text, descriptor_pb2.FileDescriptorProto()))
    return pool


ODD_POOL = _odd_pool()


def odd(name: str) -> Any:
    return message_factory.GetMessageClass(ODD_POOL.FindMessageTypeByName(f"odd.v1.{name}"))


Shuffled, Plain, Legacy = odd("Shuffled"), odd("Plain"), odd("Legacy")


def reference(message: Message) -> Any:
    """json_format's answer, with the one deliberate difference: a `Value` number that
    is an integer of magnitude below 2**53 prints as an integer (Go's protojson `1`,
    json_format `1.0`), so a JSON payload comes back as written."""
    printed = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return _integral_values(message, printed)


_JSON_VALUES = {"google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"}


def _ints(printed: Any) -> Any:
    if isinstance(printed, float) and printed.is_integer() and abs(printed) < 2.0**53:
        return int(printed)
    if isinstance(printed, dict):
        return {key: _ints(value) for key, value in printed.items()}
    if isinstance(printed, list):
        return [_ints(value) for value in printed]
    return printed


def _integral_values(message: Message, printed: Any) -> Any:
    """Walk `message` beside its printed form, integer-printing `Value` numbers only."""
    name = message.DESCRIPTOR.full_name
    if name in _JSON_VALUES:
        return _ints(printed)
    if not isinstance(printed, dict) or name == "google.protobuf.Any":
        return printed
    for field in message.DESCRIPTOR.fields:
        if field.message_type is None or field.json_name not in printed:
            continue
        value, out = getattr(message, field.name), printed[field.json_name]
        if field.message_type.GetOptions().map_entry:
            item = field.message_type.fields_by_name["value"]
            if item.message_type is not None:
                keys = {
                    json.dumps(key) if isinstance(key, bool) else str(key): key for key in value
                }
                printed[field.json_name] = {
                    k: _integral_values(value[keys[k]], v) for k, v in out.items()
                }
        elif field.is_repeated:
            printed[field.json_name] = [
                _integral_values(m, o) for m, o in zip(value, out, strict=True)
            ]
        else:
            printed[field.json_name] = _integral_values(value, out)
    return printed


def assert_same_as_json_format(message: Message) -> None:
    """Equal values, byte-identical JSON (key order, int vs float), or the same error."""
    try:
        expected = reference(message)
    except Exception as error:
        with pytest.raises(type(error)) as raised:
            to_jsonable(message)
        assert str(raised.value) == str(error)
        return
    actual = to_jsonable(message)
    assert actual == expected
    assert json.dumps(actual) == json.dumps(expected)


# Hand-picked messages ------------------------------------------------------------

KITCHEN_DEFAULTS: dict[str, Any] = {
    "id": "",
    "name": "",
    "i32": 0,
    "i64": "0",
    "u32": 0,
    "u64": "0",
    "s32": 0,
    "f64": "0",
    "flt": 0.0,
    "dbl": 0.0,
    "flag": False,
    "data": "",
    "color": "COLOR_UNSPECIFIED",
    "tags": [],
    "numbers": [],
    "colors": [],
    "labels": {},
    "counters": {},
    "customName": "",
    "inners": [],
}


def kitchen(present: dict[str, Any]) -> dict[str, Any]:
    """json_format's order: present fields by number, then absent defaults by declaration."""
    return present | {k: v for k, v in KITCHEN_DEFAULTS.items() if k not in present}


def _timestamp(seconds: int, nanos: int = 0) -> Any:
    return Timestamp(seconds=seconds, nanos=nanos)


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _with_extension() -> Any:
    legacy = Legacy(count=1)
    legacy.Extensions[ODD_POOL.FindExtensionByName("odd.v1.extra")] = 5
    return legacy


def _list_value(*items: Any) -> struct_pb2.ListValue:
    values = struct_pb2.ListValue()
    values.extend(items)
    return values


CASES: dict[str, tuple[Callable[[], Message], Any]] = {
    "source: present fields first, then defaults": (
        lambda: Source(source_id="s-1", name="n", source_type="webhook", created_at=_timestamp(1)),
        {
            "sourceId": "s-1",
            "name": "n",
            "sourceType": "webhook",
            "createdAt": "1970-01-01T00:00:01Z",
            "enabled": False,
            "paused": False,
        },
    ),
    "empty source": (
        Source,
        {"sourceId": "", "name": "", "sourceType": "", "enabled": False, "paused": False},
    ),
    "list response, optional token absent": (ListSourcesResponse, {"items": []}),
    "list response, optional token present and empty": (
        lambda: ListSourcesResponse(items=[Source(paused=True)], continuation_token=""),
        {
            "items": [
                {"paused": True, "sourceId": "", "name": "", "sourceType": "", "enabled": False}
            ],
            "continuationToken": "",
        },
    ),
    "kitchen scalars": (
        lambda: Kitchen(
            i32=-1,
            i64=-(2**63),
            u32=2**32 - 1,
            u64=2**64 - 1,
            s32=-5,
            f64=2**64 - 1,
            flt=3.4028234663852886e38,
            dbl=float("-inf"),
            flag=True,
            data=b"\xff\xfe",
            color=echo_pb2.COLOR_GREEN,
        ),
        kitchen(
            {
                "i32": -1,
                "i64": "-9223372036854775808",
                "u32": 4294967295,
                "u64": "18446744073709551615",
                "s32": -5,
                "f64": "18446744073709551615",
                "flt": 3.4028235e38,
                "dbl": "-Infinity",
                "flag": True,
                "data": "//4=",
                "color": "COLOR_GREEN",
            }
        ),
    ),
    "kitchen non-finite, unknown enum numbers, repeated": (
        lambda: Kitchen(
            flt=float("inf"),
            dbl=float("nan"),
            color=42,
            tags=["", "x"],
            numbers=[0, -1],
            colors=[1, 42],
        ),
        kitchen(
            {
                "flt": "Infinity",
                "dbl": "NaN",
                "color": 42,
                "tags": ["", "x"],
                "numbers": [0, -1],
                "colors": ["COLOR_RED", 42],
            }
        ),
    ),
    "float32 shortest repr, -0.0 is present": (
        lambda: Kitchen(flt=0.1, dbl=-0.0),
        kitchen({"flt": 0.1, "dbl": -0.0}),
    ),
    "nested, oneof zero, optional empty, json_name": (
        lambda: Kitchen(
            inner=Inner(child=Inner(label="x")),
            choice_b=0,
            opt_text="",
            custom_json="c",
            inners=[Inner()],
            labels={"k": "v"},
            counters={"n": 0},
        ),
        kitchen(
            {
                "labels": {"k": "v"},
                "counters": {"n": 0},
                "inner": {"child": {"label": "x", "count": 0}, "label": "", "count": 0},
                "optText": "",
                "customName": "c",
                "inners": [{"label": "", "count": 0}],
                "choiceB": 0,
            }
        ),
    ),
    "kitchen well-known fields": (
        lambda: Kitchen(
            at=_timestamp(0, 1000),
            ttl=Duration(seconds=1, nanos=500_000_000),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "inner.child_label"]),
            maybe_name=wrappers_pb2.StringValue(),
            maybe_count=wrappers_pb2.Int64Value(),
            maybe_flag=wrappers_pb2.BoolValue(),
            attrs=_struct({"a": [True, "s", None, 1, {}]}),
            any_value=struct_pb2.Value(null_value=struct_pb2.NULL_VALUE),
            list_value=struct_pb2.ListValue(),
            maybe_double=wrappers_pb2.DoubleValue(value=math.nan),
            maybe_bytes=wrappers_pb2.BytesValue(value=b"hi"),
        ),
        kitchen(
            {
                "at": "1970-01-01T00:00:00.000001Z",
                "ttl": "1.500s",
                "updateMask": "displayName,inner.childLabel",
                "maybeName": "",
                "maybeCount": "0",
                "maybeFlag": False,
                "attrs": {"a": [True, "s", None, 1, {}]},
                "anyValue": None,
                "listValue": [],
                "maybeDouble": "NaN",
                "maybeBytes": "aGk=",
            }
        ),
    ),
    "timestamp, first instant": (lambda: _timestamp(-62135596800), "0001-01-01T00:00:00Z"),
    "timestamp, last instant": (
        lambda: _timestamp(253402300799, 999_999_999),
        "9999-12-31T23:59:59.999999999Z",
    ),
    "timestamp, before the epoch, millis": (
        lambda: _timestamp(-1, 10_000_000),
        "1969-12-31T23:59:59.010Z",
    ),
    "timestamp, micros": (
        lambda: _timestamp(1_700_000_000, 120_000),
        "2023-11-14T22:13:20.000120Z",
    ),
    "duration, negative": (lambda: Duration(seconds=-1, nanos=-500_000_000), "-1.500s"),
    "duration, one negative nano": (lambda: Duration(nanos=-1), "-0.000000001s"),
    "duration, zero": (Duration, "0s"),
    "duration, longest": (lambda: Duration(seconds=315576000000), "315576000000s"),
    "duration, micros": (lambda: Duration(seconds=3, nanos=1000), "3.000001s"),
    "field mask, empty": (field_mask_pb2.FieldMask, ""),
    "empty": (empty_pb2.Empty, {}),
    "struct, empty": (struct_pb2.Struct, {}),
    "value, unset is null": (struct_pb2.Value, None),
    "value, integral number": (lambda: struct_pb2.Value(number_value=1), 1),
    "value, fraction": (lambda: struct_pb2.Value(number_value=1.5), 1.5),
    "value, integer at 2**53 stays a double": (
        lambda: struct_pb2.Value(number_value=2.0**53),
        9007199254740992.0,
    ),
    "value, negative integral number": (lambda: struct_pb2.Value(number_value=-42), -42),
    "value, bool": (lambda: struct_pb2.Value(bool_value=True), True),
    "list value": (lambda: _list_value(1, "a", None, [False]), [1, "a", None, [False]]),
    "int32 wrapper": (lambda: wrappers_pb2.Int32Value(value=-3), -3),
    "uint64 wrapper": (lambda: wrappers_pb2.UInt64Value(value=2**64 - 1), "18446744073709551615"),
    "float wrapper": (lambda: wrappers_pb2.FloatValue(value=0.1), 0.1),
    "uint32 wrapper": (lambda: wrappers_pb2.UInt32Value(value=7), 7),
    "bytes wrapper": (wrappers_pb2.BytesValue, ""),
    "any, empty": (any_pb2.Any, {}),
    "any, message": (
        lambda: _packed(Source(name="n")),
        {
            "@type": "type.googleapis.com/orchestrator.jobengine.v1.Source",
            "name": "n",
            "sourceId": "",
            "sourceType": "",
            "enabled": False,
            "paused": False,
        },
    ),
    "any, well-known": (
        lambda: _packed(Duration(seconds=2)),
        {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "2s"},
    ),
    "http body is a plain message": (
        lambda: httpbody_pb2.HttpBody(content_type="text/plain", data=b"hi"),
        {"contentType": "text/plain", "data": "aGk=", "extensions": []},
    ),
    "declared out of number order, all absent: declaration order": (
        Shuffled,
        {
            "zeta": "",
            "alpha": 0,
            "byInt": {},
            "byFlag": {},
            "byU64": {},
            "sf32": 0,
            "sf64": "0",
            "fx32": 0,
            "si64": "0",
            "floats": [],
            "blobs": [],
        },
    ),
    "declared out of number order, present: number order": (
        lambda: Shuffled(
            zeta="z",
            alpha=1,
            by_int={-1: 0.5},
            by_flag={True: b"\x00"},
            by_u64={2**64 - 1: Shuffled()},
            sf64=-1,
            floats=[0.1, -0.0],
            blobs=[b""],
        ),
        {
            "alpha": 1,
            "zeta": "z",
            "byFlag": {"true": "AA=="},
            "byInt": {"-1": 0.5},
            "byU64": {
                "18446744073709551615": {
                    "zeta": "",
                    "alpha": 0,
                    "byInt": {},
                    "byFlag": {},
                    "byU64": {},
                    "sf32": 0,
                    "sf64": "0",
                    "fx32": 0,
                    "si64": "0",
                    "floats": [],
                    "blobs": [],
                }
            },
            "sf64": "-1",
            "floats": [0.1, -0.0],
            "blobs": [""],
            "sf32": 0,
            "fx32": 0,
            "si64": "0",
        },
    ),
    "proto2: fields with presence are omitted, defaults or not": (Plain, {"moods": []}),
    "proto2: set fields print, closed enums by name": (
        lambda: Plain(count=7, mood=2, moods=[1], key=""),
        {"count": 7, "mood": "CROSS", "moods": ["CALM"], "key": ""},
    ),
    "proto2 extensions go to json_format": (
        _with_extension,
        {"count": 1, "[odd.v1.extra]": 5},
    ),
}


@pytest.mark.parametrize(("make", "expected"), CASES.values(), ids=CASES.keys())
def test_prints_exactly(make: Callable[[], Message], expected: Any) -> None:
    message = make()
    actual = to_jsonable(message)
    assert actual == expected
    assert json.dumps(actual) == json.dumps(expected)  # key order and types as well
    assert_same_as_json_format(message)


ERRORS: dict[str, Callable[[], Message]] = {
    "timestamp after 9999": lambda: _timestamp(253402300800),
    "timestamp nanos negative": lambda: _timestamp(0, -1),
    "timestamp in a field, before year 1": lambda: Kitchen(at=_timestamp(-62135596801)),
    "duration sign mismatch": lambda: Duration(seconds=1, nanos=-1),
    "duration nanos too big, in a field": lambda: Kitchen(ttl=Duration(nanos=10**9)),
    "duration too long": lambda: Duration(seconds=315576000001),
    "value NaN": lambda: struct_pb2.Value(number_value=math.nan),
    "value infinity in a struct in a field": lambda: Kitchen(attrs=_struct({"x": math.inf})),
    "field mask with an upper-case path": lambda: field_mask_pb2.FieldMask(paths=["Bad"]),
    "field mask with a trailing underscore": lambda: Kitchen(
        update_mask=field_mask_pb2.FieldMask(paths=["bad_"])
    ),
}


@pytest.mark.parametrize("make", ERRORS.values(), ids=ERRORS.keys())
def test_errors_are_json_formats(make: Callable[[], Message]) -> None:
    message = make()
    with pytest.raises(Exception) as expected:
        reference(message)
    with pytest.raises(type(expected.value)) as actual:
        to_jsonable(message)
    assert str(actual.value) == str(expected.value)


def test_printers_are_built_once_per_type() -> None:
    assert printer_for(Kitchen.DESCRIPTOR) is printer_for(Kitchen.DESCRIPTOR)
    key = (Kitchen.DESCRIPTOR.file.pool, "gwtest.v1.Kitchen")
    assert isinstance(json_printer._cache[key], json_printer._MessagePrinter)


def test_same_name_in_another_pool_gets_its_own_printer() -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(protos.descriptor_set_path().read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    other: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("gwtest.v1.Kitchen"))
    assert printer_for(other.DESCRIPTOR) is not printer_for(Kitchen.DESCRIPTOR)
    message = other(i64=5)
    message.at.seconds, message.maybe_count.value = 5, 1  # the other pool's WKT classes
    assert to_jsonable(message) == kitchen(
        {"i64": "5", "at": "1970-01-01T00:00:05Z", "maybeCount": "1"}
    )


def test_a_type_that_fails_to_build_is_printed_by_json_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = _odd_pool()  # a fresh pool: nothing cached for it yet
    plain = message_factory.GetMessageClass(pool.FindMessageTypeByName("odd.v1.Plain"))
    monkeypatch.delitem(json_printer._BY_TYPE, FieldDescriptor.TYPE_STRING)
    message = plain(key="k", count=1)
    assert to_jsonable(message) == {"count": 1, "key": "k", "moods": []}
    assert json_printer._cache[(pool, "odd.v1.Plain")] is json_printer._delegate


# Random messages drawn from descriptors ------------------------------------------

_T = FieldDescriptor
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
_INT32, _INT64 = st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1)
_UINT32, _UINT64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    **dict.fromkeys((_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32), _INT32),
    **dict.fromkeys((_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64), _INT64),
    **dict.fromkeys((_T.TYPE_UINT32, _T.TYPE_FIXED32), _UINT32),
    **dict.fromkeys((_T.TYPE_UINT64, _T.TYPE_FIXED64), _UINT64),
    _T.TYPE_BOOL: st.booleans(),
    _T.TYPE_STRING: _TEXT,
    _T.TYPE_BYTES: st.binary(max_size=6),
    _T.TYPE_FLOAT: st.floats(width=32),
    _T.TYPE_DOUBLE: st.floats(),
}
_NANOS = st.one_of(
    st.just(0),
    st.integers(0, 999).map(lambda n: n * 1_000_000),
    st.integers(0, 999_999).map(lambda n: n * 1_000),
    st.integers(0, 999_999_999),
)
_SECONDS_EDGES = [-62135596800, -1, 0, 86399, 253402300799]
_TIMESTAMPS = st.builds(
    Timestamp,
    seconds=st.integers(-62135596800, 253402300799) | st.sampled_from(_SECONDS_EDGES),
    nanos=_NANOS,
)


def _duration(seconds: int, nanos: int, negative: bool) -> Any:
    sign = -1 if seconds < 0 or (seconds == 0 and negative) else 1
    return Duration(seconds=seconds, nanos=sign * nanos)


_DURATIONS = st.builds(
    _duration,
    st.integers(-315576000000, 315576000000) | st.sampled_from([-315576000000, 315576000000]),
    _NANOS,
    st.booleans(),
)
_SEGMENT = st.from_regex(r"\A[a-z][a-z0-9]{0,3}(_[a-z][a-z0-9]{0,3}){0,2}\Z")
_PATHS = st.lists(st.lists(_SEGMENT, min_size=1, max_size=3).map(".".join), max_size=4)
_FIELD_MASKS = st.builds(field_mask_pb2.FieldMask, paths=_PATHS)
_JSON_LEAVES = st.none() | st.booleans() | _TEXT | st.floats(allow_nan=False, allow_infinity=False)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _value(json_value: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    value.CopyFrom(_struct({"v": json_value}).fields["v"])
    return value


_WELL_KNOWN: dict[str, st.SearchStrategy[Any]] = {
    "google.protobuf.Timestamp": _TIMESTAMPS,
    "google.protobuf.Duration": _DURATIONS,
    "google.protobuf.FieldMask": _FIELD_MASKS,
    "google.protobuf.Struct": st.dictionaries(_TEXT, _JSON, max_size=4).map(_struct),
    "google.protobuf.Value": st.just(struct_pb2.Value()) | _JSON.map(_value),
    "google.protobuf.ListValue": st.lists(_JSON, max_size=4).map(lambda v: _list_value(*v)),
}


def messages(descriptor: Descriptor, depth: int = 2) -> st.SearchStrategy[Any]:
    """Random instances of `descriptor`: any subset of fields set, nesting depth-limited."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name in _WELL_KNOWN:
        return _WELL_KNOWN[descriptor.full_name]
    if descriptor.file.name == "google/protobuf/wrappers.proto":
        return _element(descriptor.fields_by_name["value"], depth).map(lambda v: cls(value=v))
    optional = {f.name: _field(f, depth) for f in descriptor.fields if _drawable(f, depth)}
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _fill(cls(), values))


def _drawable(field: FieldDescriptor, depth: int) -> bool:
    """At depth 0 only leaves: scalars, enums, well-known types and wrappers."""
    target = _entry_value(field).message_type
    if target is None or depth > 0:
        return True
    return target.full_name in _WELL_KNOWN or target.file.name.startswith("google/protobuf/")


def _entry_value(field: FieldDescriptor) -> FieldDescriptor:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return field.message_type.fields_by_name["value"]
    return field


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if _entry_value(field) is not field:
        assert field.message_type is not None
        key, value = (field.message_type.fields_by_name[n] for n in ("key", "value"))
        return st.dictionaries(_element(key, depth), _element(value, depth), max_size=3)
    if field.is_repeated:
        return st.lists(_element(field, depth), max_size=3)
    return _element(field, depth)


def _element(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return st.deferred(lambda: messages(field.message_type, depth - 1))  # type: ignore[arg-type]
    if field.enum_type is not None:
        numbers = st.sampled_from(sorted(field.enum_type.values_by_number))
        return numbers if field.enum_type.is_closed else numbers | st.integers(-3, 99)
    return _SCALARS[field.type]


def _fill(message: Any, values: dict[str, Any]) -> Any:
    """Set drawn values; a later oneof member replaces an earlier one, as in protobuf."""
    for name, value in values.items():
        field, target = message.DESCRIPTOR.fields_by_name[name], getattr(message, name)
        is_message = _entry_value(field).message_type is not None
        if _entry_value(field) is not field:
            for key, item in value.items():
                if is_message:
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            for item in value:
                target.add().CopyFrom(item) if is_message else target.append(item)
        elif is_message:
            target.SetInParent()
            target.MergeFrom(value)
        else:
            setattr(message, name, value)
    return message


_PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

RANDOM_TYPES: list[Any] = [
    Kitchen,
    Source,
    ListSourcesResponse,
    Shuffled,
    Plain,
    struct_pb2.Struct,
    struct_pb2.Value,
    struct_pb2.ListValue,
    Timestamp,
    Duration,
    field_mask_pb2.FieldMask,
    wrappers_pb2.FloatValue,
]


@pytest.mark.parametrize("cls", RANDOM_TYPES, ids=lambda cls: cls.DESCRIPTOR.full_name)
@_PROPERTY
@given(data=st.data())
def test_random_messages_print_as_json_format(cls: Any, data: st.DataObject) -> None:
    assert_same_as_json_format(data.draw(messages(cls.DESCRIPTOR)))


@_PROPERTY
@given(
    seconds=st.integers(-(2**63), 2**63 - 1),
    nanos=st.integers(-(2**31), 2**31 - 1),
    number=st.floats(),
)
def test_out_of_range_well_known_values_fail_as_json_format(
    seconds: int, nanos: int, number: float
) -> None:
    assert_same_as_json_format(Timestamp(seconds=seconds, nanos=nanos))
    assert_same_as_json_format(Duration(seconds=seconds, nanos=nanos))
    assert_same_as_json_format(Kitchen(at=Timestamp(seconds=seconds, nanos=nanos)))
    assert_same_as_json_format(_struct({"n": number}))
