"""gateway/json_parser.py: decoded JSON bodies into messages, through the converters
that read path captures and query parameters (gateway/scalars.py).

References: the proto3 JSON mapping (protobuf.dev/programming-guides/json) for which
JSON type each field takes; grpc-gateway's query parser for the string forms. Each
refused value names its path in the request message and says what was expected,
in our words (never json_format's or Python's).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    struct_pb2,
    text_format,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field_paths import FieldError, UnknownParameter
from gateway.json_parser import merge_object, set_value
from tests.support import protos

Kitchen = protos.echo_pb2().Kitchen

# Every integer kind, an enum and the integer map keys Kitchen lacks.
_NUMBERS_PROTO = """
name: "jsontest/v1/numbers.proto"
package: "jsontest.v1"
syntax: "proto3"
dependency: ["google/protobuf/struct.proto", "google/protobuf/timestamp.proto",
             "google/protobuf/wrappers.proto"]
enum_type { name: "Level" value { name: "LEVEL_UNSPECIFIED" number: 0 }
                          value { name: "LEVEL_HIGH" number: 1 }
                          value { name: "LEVEL_NEGATIVE" number: -1 } }
message_type {
  name: "Numbers"
  field { name: "int32" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
  field { name: "int64" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
  field { name: "uint32" number: 3 label: LABEL_OPTIONAL type: TYPE_UINT32 }
  field { name: "uint64" number: 4 label: LABEL_OPTIONAL type: TYPE_UINT64 }
  field { name: "sint32" number: 5 label: LABEL_OPTIONAL type: TYPE_SINT32 }
  field { name: "sint64" number: 6 label: LABEL_OPTIONAL type: TYPE_SINT64 }
  field { name: "fixed32" number: 7 label: LABEL_OPTIONAL type: TYPE_FIXED32 }
  field { name: "fixed64" number: 8 label: LABEL_OPTIONAL type: TYPE_FIXED64 }
  field { name: "sfixed32" number: 9 label: LABEL_OPTIONAL type: TYPE_SFIXED32 }
  field { name: "sfixed64" number: 10 label: LABEL_OPTIONAL type: TYPE_SFIXED64 }
  field { name: "level" number: 11 label: LABEL_OPTIONAL type: TYPE_ENUM
          type_name: ".jsontest.v1.Level" }
  field { name: "flt" number: 12 label: LABEL_OPTIONAL type: TYPE_FLOAT }
  field { name: "dbl" number: 13 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
  field { name: "by_int" number: 14 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".jsontest.v1.Numbers.ByIntEntry" }
  field { name: "by_flag" number: 15 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".jsontest.v1.Numbers.ByFlagEntry" }
  field { name: "maybe_u32" number: 16 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.UInt32Value" }
  field { name: "maybe_flag" number: 17 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.BoolValue" }
  field { name: "nothing" number: 18 label: LABEL_OPTIONAL type: TYPE_ENUM
          type_name: ".google.protobuf.NullValue" }
  field { name: "levels" number: 19 label: LABEL_REPEATED type: TYPE_ENUM
          type_name: ".jsontest.v1.Level" }
  field { name: "values" number: 20 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".google.protobuf.Value" }
  nested_type { name: "ByIntEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_SINT64 }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_UINT32 } }
  nested_type { name: "ByFlagEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".google.protobuf.Timestamp" } }
}
"""


def _numbers_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    for module in (struct_pb2, timestamp_pb2, wrappers_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.Add(text_format.Parse(_NUMBERS_PROTO, descriptor_pb2.FileDescriptorProto()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("jsontest.v1.Numbers"))


Numbers = _numbers_class()

INT32, INT64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
UINT32, UINT64 = (0, 2**32 - 1), (0, 2**64 - 1)
KINDS = {
    "int32": ("int32", INT32), "sint32": ("int32", INT32), "sfixed32": ("int32", INT32),
    "int64": ("int64", INT64), "sint64": ("int64", INT64), "sfixed64": ("int64", INT64),
    "uint32": ("uint32", UINT32), "fixed32": ("uint32", UINT32),
    "uint64": ("uint64", UINT64), "fixed64": ("uint64", UINT64),
}  # fmt: skip


def parse(document: dict[str, Any], message: Message | None = None) -> dict[str, Any]:
    target = Numbers() if message is None else message
    merge_object(target, document)
    return MessageToDict(target, preserving_proto_field_name=True)


def refusal(document: Any, message: Message | None = None) -> tuple[str, str]:
    with pytest.raises(FieldError) as info:
        merge_object(Numbers() if message is None else message, document)
    return info.value.param, info.value.reason


# --- integers: every kind, at and past both ends, as numbers and as strings ------------


@pytest.mark.parametrize("name", sorted(KINDS))
def test_integer_bounds_are_accepted(name: str) -> None:
    low, high = KINDS[name][1]
    for value in (low, high):
        want = value if KINDS[name][0] in ("int32", "uint32") else str(value)
        assert parse({name: value}) == ({name: want} if value else {})
        assert parse({name: str(value)}) == ({name: want} if value else {})


@pytest.mark.parametrize("name", sorted(KINDS))
def test_integer_out_of_range_is_refused_naming_the_field(name: str) -> None:
    kind, (low, high) = KINDS[name]
    for value in (low - 1, high + 1, high + 2**32 + 1):
        assert refusal({name: value}) == (name, f"{value} is not a decimal {kind}; out of range")
        assert refusal({name: str(value)}) == (
            name,
            f'"{value}" is not a decimal {kind}; out of range',
        )


def test_wrapping_values_are_refused_not_narrowed() -> None:
    # 4294967297 is 2^32 + 1: narrowed to 32 bits it would read as 1.
    assert refusal({"int32": 4294967297}) == (
        "int32",
        "4294967297 is not a decimal int32; out of range",
    )
    assert refusal({"level": 4294967297}) == (
        "level",
        "4294967297 is not a Level name or number; out of range",
    )
    assert refusal({"level": "4294967297"}) == (
        "level",
        '"4294967297" is not a Level name or number; out of range',
    )
    assert refusal({"levels": [1, -2147483649]}) == (
        "levels[1]",
        "-2147483649 is not a Level name or number; out of range",
    )


def test_integers_too_long_to_print_are_refused_in_few_words() -> None:
    assert refusal({"uint64": 10**5000}) == (
        "uint64",
        "a number of over 300 digits is not a decimal uint64; out of range",
    )


def test_integers_as_json_numbers() -> None:
    assert parse({"int32": 1e2, "int64": -0.0, "uint64": 1.8e19}) == {
        "int32": 100,
        "uint64": "18000000000000000000",
    }
    assert refusal({"int32": 1.5}) == ("int32", "1.5 is not a decimal int32")
    assert refusal({"uint64": 1e20}) == ("uint64", "1e+20 is not a decimal uint64; out of range")
    assert refusal({"int32": True}) == ("int32", "expected a decimal int32, got true")


def test_integer_strings_are_strict_decimals() -> None:
    for text in ("1e2", " 1", "1_000", "0x10", "٣", ""):
        shown = json.dumps(text, ensure_ascii=False)
        assert refusal({"int32": text}) == ("int32", f"{shown} is not a decimal int32")


def test_enums_by_name_number_or_number_string() -> None:
    assert parse({"level": "LEVEL_HIGH"}) == {"level": "LEVEL_HIGH"}
    assert parse({"level": -1}) == {"level": "LEVEL_NEGATIVE"}
    assert parse({"level": "1"}) == {"level": "LEVEL_HIGH"}
    assert parse({"levels": ["LEVEL_HIGH", 0]}) == {"levels": ["LEVEL_HIGH", "LEVEL_UNSPECIFIED"]}
    expected = "expected one of LEVEL_UNSPECIFIED, LEVEL_HIGH, LEVEL_NEGATIVE or its number"
    assert refusal({"level": 7}) == (
        "level",
        f"7 is not a Level name or number; {expected}",
    )
    assert refusal({"level": "level_high"})[1].endswith(expected)


def test_map_keys_and_values_are_range_checked() -> None:
    assert parse({"by_int": {"-9223372036854775808": 4294967295}}) == {
        "by_int": {"-9223372036854775808": 4294967295}
    }
    assert refusal({"by_int": {"9223372036854775808": 1}}) == (
        "by_int[9223372036854775808]",
        'map key "9223372036854775808" is not a decimal int64; out of range',
    )
    assert refusal({"by_int": {"1": 4294967296}}) == (
        "by_int[1]",
        "4294967296 is not a decimal uint32; out of range",
    )


def test_wrappers_are_range_checked() -> None:
    assert parse({"maybe_u32": 4294967295}) == {"maybe_u32": 4294967295}
    assert refusal({"maybe_u32": -1}) == (
        "maybe_u32",
        "-1 is not a decimal uint32; out of range",
    )


# --- floats ---------------------------------------------------------------------------


def test_floats() -> None:
    assert parse({"flt": 1.5, "dbl": "NaN"}) == {"flt": 1.5, "dbl": "NaN"}
    assert parse({"dbl": "-Infinity", "flt": "2.5"}) == {"dbl": "-Infinity", "flt": 2.5}
    assert parse({"dbl": 10**20}) == {"dbl": 1e20}
    assert refusal({"flt": 1e39}) == (
        "flt",
        "1e+39 is not a float (decimal, NaN, Infinity or -Infinity); out of range",
    )
    assert refusal({"dbl": 10**400})[1].endswith("; out of range")
    assert refusal({"dbl": "1e999"})[1].endswith("; out of range")
    assert refusal({"dbl": True}) == (
        "dbl",
        "expected a double (decimal, NaN, Infinity or -Infinity), got true",
    )


# --- the JSON type each field takes ---------------------------------------------------


def test_bool_takes_only_true_or_false() -> None:
    assert parse({"maybe_flag": False}) == {"maybe_flag": False}
    for value in ("true", 1, "t"):
        param, reason = refusal({"maybe_flag": value})
        assert (param, reason.split(", got")[0]) == ("maybe_flag", "expected true or false")
    assert refusal(json.loads('{"x": 1}') | {"maybe_flag": None, "x": 1}) == (
        "x",
        "unknown field",
    )


def test_kitchen_scalars_use_the_query_converters() -> None:
    kitchen = Kitchen()
    merge_object(
        kitchen,
        {"data": "-_8", "at": "2026-11-22t10:00:00z", "ttl": "1.5s", "updateMask": "a,bC.d"},
    )
    assert MessageToDict(kitchen) == {
        "data": "+/8=",
        "at": "2026-11-22T10:00:00Z",
        "ttl": "1.500s",
        "updateMask": "a,bC.d",
    }


@pytest.mark.parametrize(
    ("document", "param", "reason"),
    [
        ({"data": "QUJD!!!"}, "data", '"QUJD!!!" is not base64 bytes (standard or URL-safe)'),
        ({"data": "ab+-"}, "data", '"ab+-" is not base64 bytes (standard or URL-safe); mixes '
         "the standard and URL-safe alphabets"),
        ({"at": "2026-02-30T00:00:00Z"}, "at", '"2026-02-30T00:00:00Z" is not an RFC 3339 '
         "timestamp such as 2026-11-22T10:00:00Z; day is out of range for month"),
        ({"at": "2026-11-22 10:00:00Z"}, "at", '"2026-11-22 10:00:00Z" is not an RFC 3339 '
         "timestamp such as 2026-11-22T10:00:00Z"),
        ({"at": 5}, "at", "5 is not an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"),
        ({"ttl": "1_0s"}, "ttl", '"1_0s" is not a duration in seconds such as 1.5s'),
        ({"ttl": " 1s"}, "ttl", '" 1s" is not a duration in seconds such as 1.5s'),
        ({"name": 5}, "name", "5 is not a string"),
        ({"name": "a\ud800"}, "name", "value is not valid Unicode (a lone surrogate escape)"),
        ({"name": ["a"]}, "name", "expected a string, got an array"),
        ({"tags": "x"}, "tags", 'expected a JSON array of string, got the string "x"'),
        ({"tags": ["x", None]}, "tags[1]", "null is not a list element"),
        ({"labels": []}, "labels",
         "expected a JSON object (map of string to string), got an array"),
        ({"labels": {"k": None}}, "labels[k]", "null is not a map value"),
        ({"counters": {"k": "1.5"}}, "counters[k]", '"1.5" is not a decimal int32'),
        ({"inner": {"count": 3000000000}}, "inner.count",
         "3000000000 is not a decimal int32; out of range"),
        ({"inner": {"child": {"nope": 1}}}, "inner.child.nope",
         "unknown field"),
        ({"inner": "x"}, "inner", 'expected a JSON object (Inner), got the string "x"'),
        ({"inners": [{}, {"count": "x"}]}, "inners[1].count", '"x" is not a decimal int32'),
        ({"attrs": [1]}, "attrs", "expected a JSON object, got an array"),
        ({"listValue": {"a": 1}}, "listValue", "expected a JSON array, got an object"),
        ({"maybeName": 5}, "maybeName", "5 is not a string"),
        ({"customName": "a", "custom_json": "b"}, "custom_json",
         'the same field as "customName", given twice'),
        ({"choiceA": "a", "choice_b": 1}, "choice_b", '"choiceA" of oneof "choice" is already set'),
        ({"bogus": 1}, "bogus", "unknown field"),
        ({"na\udc80me": 1}, "na\\udc80me",
         "member name is not valid Unicode (a lone surrogate escape)"),
        ({"labels": {"\ud800": "x"}}, "labels[\\ud800]",
         "map key is not valid Unicode (a lone surrogate escape)"),
        ({"attrs": {"k": [1, {"\udfff": 2}]}}, "attrs.k[1].\\udfff",
         "member name is not valid Unicode (a lone surrogate escape)"),
        ({"anyValue": {"k": "\ud800"}}, "anyValue.k",
         "value is not valid Unicode (a lone surrogate escape)"),
        ({"flag": "\ud800"}, "flag", "value is not valid Unicode (a lone surrogate escape)"),
        ({"flag": "a\u2028\x00\U0001f600"}, "flag",
         'expected true or false, got the string "a\\u2028\\u0000\U0001f600"'),
        ({"anyValue": json.loads("[" * 31 + "]" * 31)}, "anyValue",
         "nested too deeply: at most 30 levels of arrays and objects"),
        ({"updateMask": "a,B!"}, "updateMask", '"a,B!" is not comma-separated field paths; '
         "'B!' is not a field path"),
    ],
)  # fmt: skip
def test_kitchen_refusals(document: dict[str, Any], param: str, reason: str) -> None:
    assert refusal(document, Kitchen()) == (param, reason)


def test_thirty_levels_of_free_json() -> None:
    kitchen = Kitchen()
    merge_object(kitchen, {"anyValue": json.loads('{"a":' * 30 + "1" + "}" * 30)})
    assert kitchen.ByteSize() > 0


def test_unknown_field_is_an_unknown_parameter() -> None:
    with pytest.raises(UnknownParameter):
        merge_object(Kitchen(), {"bogus": 1})


def test_nulls() -> None:
    """null leaves a field unset, except a Value (JSON null) and NullValue."""
    kitchen = Kitchen()
    merge_object(kitchen, {"name": None, "inner": None, "tags": None, "anyValue": None})
    assert MessageToDict(kitchen) == {"anyValue": None}
    assert parse({"nothing": None, "values": [None, 1]}) == {"values": [None, 1.0]}


def test_free_json_and_empty_objects() -> None:
    kitchen = Kitchen()
    merge_object(kitchen, {"attrs": {"a": [1, "b", None]}, "inner": {}, "listValue": [True]})
    assert MessageToDict(kitchen) == {
        "attrs": {"a": [1.0, "b", None]},
        "inner": {},
        "listValue": [True],
    }


def test_one_field_bodies_name_paths_from_the_field() -> None:
    kitchen = Kitchen()
    field = kitchen.DESCRIPTOR.fields_by_name["inner"]
    set_value(kitchen, field, {"label": "x", "count": "2"}, path="inner")
    assert MessageToDict(kitchen) == {"inner": {"label": "x", "count": 2}}
    with pytest.raises(FieldError) as info:
        set_value(Kitchen(), field, {"count": 2**31}, path="inner")
    assert info.value.param == "inner.count"
    tags = kitchen.DESCRIPTOR.fields_by_name["tags"]
    with pytest.raises(FieldError) as info:
        set_value(Kitchen(), tags, {"a": 1}, path="tags")
    assert (info.value.param, info.value.reason) == (
        "tags",
        "expected a JSON array of string, got an object",
    )


def test_bool_map_keys_and_timestamp_values() -> None:
    assert parse({"by_flag": {"true": "2026-11-22T10:00:00Z"}}) == {
        "by_flag": {"true": "2026-11-22T10:00:00Z"}
    }
    assert refusal({"by_flag": {"maybe": "2026-11-22T10:00:00Z"}}) == (
        "by_flag[maybe]",
        'map key "maybe" is not a bool (true, false, 1 or 0)',
    )


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(
    [f.json_name for f in Kitchen.DESCRIPTOR.fields] + [f.name for f in Kitchen.DESCRIPTOR.fields]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _JSON, max_size=4))
def test_nothing_but_field_errors_escape(document: dict[str, Any]) -> None:
    with contextlib.suppress(FieldError):
        merge_object(Kitchen(), document)
