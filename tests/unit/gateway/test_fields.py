"""gateway/field_paths.py, scalars.py and query.py: strings (path captures, query
parameters) into protobuf fields.

Behaviour reference: grpc-gateway runtime/query.go and the query-parameter rules in
google/api/http.proto. `Kitchen` (tests/protos/gwtest/v1/echo.proto) has one field of
each kind; `Extra`, built below in its own descriptor pool, adds what Kitchen lacks
(the other wrappers, Empty, Any, int and bool map keys) and proves that well-known
types from a second pool work.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl

import pytest
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    message_factory,
    struct_pb2,
    text_format,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field_paths import FieldError, UnknownParameter, resolve_path
from gateway.query import apply_query, set_field
from gateway.scalars import convert_scalar
from tests.support import protos

echo_pb2 = protos.echo_pb2()
Kitchen = echo_pb2.Kitchen
Inner = echo_pb2.Inner
KITCHEN: Descriptor = Kitchen.DESCRIPTOR

_EXTRA_PROTO = """
name: "fieldtest/v1/extra.proto"
package: "fieldtest.v1"
syntax: "proto3"
dependency: ["google/protobuf/any.proto", "google/protobuf/empty.proto"]
dependency: ["google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"]
message_type {
  name: "Extra"
  field { name: "maybe_float" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.FloatValue" }
  field { name: "maybe_i32" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int32Value" }
  field { name: "maybe_u32" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.UInt32Value" }
  field { name: "maybe_u64" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.UInt64Value" }
  field { name: "nothing" number: 5 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Empty" }
  field { name: "blob" number: 6 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Any" }
  field { name: "by_id" number: 7 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".fieldtest.v1.Extra.ByIdEntry" }
  field { name: "by_flag" number: 8 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".fieldtest.v1.Extra.ByFlagEntry" }
  field { name: "times" number: 9 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".fieldtest.v1.Extra.TimesEntry" }
  field { name: "children" number: 10 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".fieldtest.v1.Extra.ChildrenEntry" }
  field { name: "stamps" number: 11 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".google.protobuf.Timestamp" }
  field { name: "sub" number: 12 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".fieldtest.v1.Extra" }
  field { name: "sf32" number: 13 label: LABEL_OPTIONAL type: TYPE_SFIXED32 }
  field { name: "sf64" number: 14 label: LABEL_OPTIONAL type: TYPE_SFIXED64 }
  field { name: "fx32" number: 15 label: LABEL_OPTIONAL type: TYPE_FIXED32 }
  field { name: "si64" number: 16 label: LABEL_OPTIONAL type: TYPE_SINT64 }
  nested_type { name: "ByIdEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT64 }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING } }
  nested_type { name: "ByFlagEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING } }
  nested_type { name: "TimesEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".google.protobuf.Timestamp" } }
  nested_type { name: "ChildrenEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".fieldtest.v1.Extra" } }
}
"""


def _extra_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    for module in (any_pb2, empty_pb2, timestamp_pb2, wrappers_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.Add(text_format.Parse(_EXTRA_PROTO, descriptor_pb2.FileDescriptorProto()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fieldtest.v1.Extra"))


def _other_pool_kitchen_class() -> Any:
    """gwtest.v1.Kitchen again, from the descriptor set, as a gateway might load it."""
    files = descriptor_pb2.FileDescriptorSet.FromString(protos.descriptor_set_path().read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("gwtest.v1.Kitchen"))


Extra = _extra_class()
EXTRA: Descriptor = Extra.DESCRIPTOR


def _k(name: str) -> FieldDescriptor:
    return KITCHEN.fields_by_name[name]


def _x(name: str) -> FieldDescriptor:
    return EXTRA.fields_by_name[name]


def query(text: str, message: Any = None, **options: Any) -> Any:
    """Apply a raw query string the way the caller does (parse_qsl, blanks kept)."""
    target = Kitchen() if message is None else message
    apply_query(target, parse_qsl(text, keep_blank_values=True), **options)
    return target


def query_error(text: str, message: Any = None, **options: Any) -> FieldError:
    with pytest.raises(FieldError) as info:
        query(text, message, **options)
    return info.value


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


# --- errors --------------------------------------------------------------------------


def test_field_error_names_the_parameter() -> None:
    error = query_error("i32=abc")
    assert type(error) is FieldError
    assert isinstance(error, ValueError)
    assert error.param == "i32"
    assert error.reason == '"abc" is not a decimal int32'
    assert str(error) == 'invalid parameter "i32": "abc" is not a decimal int32'


def test_unknown_parameter_is_a_field_error() -> None:
    error = query_error("bogus=1")
    assert type(error) is UnknownParameter
    assert str(error) == 'invalid parameter "bogus": unknown field'


def test_long_values_are_cut_in_messages() -> None:
    error = query_error("i32=" + "x" * 100)
    assert error.reason == '"' + "x" * 40 + '"... is not a decimal int32'


# --- convert_scalar: scalars ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text", "want"),
    [
        pytest.param(_k("i32"), "-2147483648", -(2**31), id="int32-min"),
        pytest.param(_k("i32"), "2147483647", 2**31 - 1, id="int32-max"),
        pytest.param(_k("i32"), "+7", 7, id="int32-plus-sign"),
        pytest.param(_k("i32"), "007", 7, id="int32-leading-zeros"),
        pytest.param(_k("s32"), "-3", -3, id="sint32"),
        pytest.param(_x("sf32"), "-2147483648", -(2**31), id="sfixed32-min"),
        pytest.param(_k("i64"), "-9223372036854775808", -(2**63), id="int64-min"),
        pytest.param(_k("i64"), "9223372036854775807", 2**63 - 1, id="int64-max"),
        pytest.param(_x("sf64"), "-9223372036854775808", -(2**63), id="sfixed64-min"),
        pytest.param(_x("si64"), "9223372036854775807", 2**63 - 1, id="sint64-max"),
        pytest.param(_k("u32"), "4294967295", 2**32 - 1, id="uint32-max"),
        pytest.param(_x("fx32"), "4294967295", 2**32 - 1, id="fixed32-max"),
        pytest.param(_k("u64"), "18446744073709551615", 2**64 - 1, id="uint64-max"),
        pytest.param(_k("f64"), "18446744073709551615", 2**64 - 1, id="fixed64-max"),
        pytest.param(_k("u64"), "0" * 30 + "1", 1, id="uint64-many-leading-zeros"),
        pytest.param(_k("flt"), "1.5", 1.5, id="float"),
        pytest.param(_k("flt"), "3.4e38", 3.4e38, id="float-near-max"),
        pytest.param(_k("dbl"), "-2.5e-3", -0.0025, id="double-exponent"),
        pytest.param(_k("dbl"), "1E3", 1000.0, id="double-upper-exponent"),
        pytest.param(_k("dbl"), ".5", 0.5, id="double-leading-dot"),
        pytest.param(_k("dbl"), "42", 42.0, id="double-integer"),
        pytest.param(_k("flag"), "true", True, id="bool-true"),
        pytest.param(_k("flag"), "True", True, id="bool-True"),
        pytest.param(_k("flag"), "TRUE", True, id="bool-TRUE"),
        pytest.param(_k("flag"), "tRuE", True, id="bool-mixed-case"),
        pytest.param(_k("flag"), "t", True, id="bool-t"),
        pytest.param(_k("flag"), "T", True, id="bool-T"),
        pytest.param(_k("flag"), "1", True, id="bool-1"),
        pytest.param(_k("flag"), "false", False, id="bool-false"),
        pytest.param(_k("flag"), "FALSE", False, id="bool-FALSE"),
        pytest.param(_k("flag"), "F", False, id="bool-F"),
        pytest.param(_k("flag"), "0", False, id="bool-0"),
        pytest.param(_k("name"), "héllo wörld", "héllo wörld", id="string-unicode"),
        pytest.param(_k("name"), "a,b", "a,b", id="string-comma"),
        pytest.param(_k("name"), "", "", id="string-empty"),
        pytest.param(_k("data"), "aGVsbG8=", b"hello", id="bytes-padded"),
        pytest.param(_k("data"), "aGVsbG8", b"hello", id="bytes-unpadded"),
        pytest.param(_k("data"), "+/8=", b"\xfb\xff", id="bytes-standard"),
        pytest.param(_k("data"), "-_8", b"\xfb\xff", id="bytes-url-safe"),
        pytest.param(_k("data"), "", b"", id="bytes-empty"),
        pytest.param(_k("color"), "COLOR_RED", 1, id="enum-name"),
        pytest.param(_k("color"), "2", 2, id="enum-number"),
        pytest.param(_k("color"), "0", 0, id="enum-zero"),
    ],
)
def test_convert_scalar(field: FieldDescriptor, text: str, want: object) -> None:
    got = convert_scalar(field, text, param="p")
    assert got == want
    assert type(got) is type(want)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("NaN", math.nan, id="NaN"),
        pytest.param("nan", math.nan, id="nan"),
        pytest.param("Infinity", math.inf, id="Infinity"),
        pytest.param("-Infinity", -math.inf, id="minus-Infinity"),
        pytest.param("+Infinity", math.inf, id="plus-Infinity"),
        pytest.param("inf", math.inf, id="inf"),
        pytest.param("-INF", -math.inf, id="minus-INF"),
    ],
)
def test_convert_scalar_float_words(text: str, want: float) -> None:
    for field in (_k("flt"), _k("dbl")):
        got = convert_scalar(field, text, param="p")
        assert isinstance(got, float)
        assert got == want or (math.isnan(got) and math.isnan(want))


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        pytest.param(_k("i32"), "2147483648", '"2147483648" is not a decimal int32; out of range',
                     id="int32-overflow"),
        pytest.param(_k("i32"), "-2147483649", "is not a decimal int32; out of range",
                     id="int32-underflow"),
        pytest.param(_x("sf32"), "2147483648", "is not a decimal int32; out of range",
                     id="sfixed32-overflow"),
        pytest.param(_k("i64"), "9223372036854775808", "is not a decimal int64; out of range",
                     id="int64-overflow"),
        pytest.param(_x("si64"), "-9223372036854775809", "is not a decimal int64; out of range",
                     id="sint64-underflow"),
        pytest.param(_k("u32"), "4294967296", "is not a decimal uint32; out of range",
                     id="uint32-overflow"),
        pytest.param(_x("fx32"), "4294967296", "is not a decimal uint32; out of range",
                     id="fixed32-overflow"),
        pytest.param(_k("u32"), "-1", '"-1" is not a decimal uint32; out of range',
                     id="uint32-negative"),
        pytest.param(_k("u64"), "18446744073709551616", "is not a decimal uint64; out of range",
                     id="uint64-overflow"),
        pytest.param(_k("u64"), "9" * 5000, "is not a decimal uint64; out of range",
                     id="uint64-5000-digits"),
        pytest.param(_k("i32"), "1_000", '"1_000" is not a decimal int32', id="int-underscore"),
        pytest.param(_k("i32"), " 1", '" 1" is not a decimal int32', id="int-space"),
        pytest.param(_k("i32"), "1.0", '"1.0" is not a decimal int32', id="int-fraction"),
        pytest.param(_k("i32"), "1e3", '"1e3" is not a decimal int32', id="int-exponent"),
        pytest.param(_k("i32"), "0x10", '"0x10" is not a decimal int32', id="int-hex"),
        pytest.param(_k("i32"), "٣", '"٣" is not a decimal int32', id="int-arabic-digit"),
        pytest.param(_k("i32"), "", '"" is not a decimal int32', id="int-empty"),
        pytest.param(_k("i32"), "--1", '"--1" is not a decimal int32', id="int-two-signs"),
        pytest.param(_k("flt"), "1e39", '"1e39" is not a float', id="float-overflow"),
        pytest.param(_k("flt"), "1e39", "out of range", id="float-overflow-detail"),
        pytest.param(_k("dbl"), "1e999", '"1e999" is not a double (decimal, NaN, Infinity or '
                     "-Infinity); out of range", id="double-overflow"),
        pytest.param(_k("dbl"), "1.2.3", '"1.2.3" is not a double', id="double-two-dots"),
        pytest.param(_k("dbl"), "1_0.5", '"1_0.5" is not a double', id="double-underscore"),
        pytest.param(_k("dbl"), "0x1p-2", '"0x1p-2" is not a double', id="double-hex"),
        pytest.param(_k("dbl"), "nanx", '"nanx" is not a double', id="double-word"),
        pytest.param(_k("dbl"), "", '"" is not a double', id="double-empty"),
        pytest.param(_k("flag"), "yes", '"yes" is not a bool (true, false, 1 or 0)', id="bool-yes"),
        pytest.param(_k("flag"), "2", '"2" is not a bool', id="bool-2"),
        pytest.param(_k("flag"), "", '"" is not a bool', id="bool-empty"),
        pytest.param(_k("data"), "!!", '"!!" is not base64 bytes (standard or URL-safe)',
                     id="bytes-garbage"),
        pytest.param(_k("data"), "Q", '"Q" is not base64 bytes', id="bytes-one-char"),
        pytest.param(_k("data"), "ab+-", "mixes the standard and URL-safe alphabets",
                     id="bytes-mixed-alphabets"),
        pytest.param(_k("data"), "é", '"é" is not base64 bytes', id="bytes-non-ascii"),
        pytest.param(_k("color"), "COLOR_BLUE", '"COLOR_BLUE" is not a Color name or '
                     "number; expected one of COLOR_UNSPECIFIED, COLOR_RED, COLOR_GREEN or its "
                     "number", id="enum-unknown-name"),
        pytest.param(_k("color"), "7", '"7" is not a Color name or number',
                     id="enum-undeclared-number"),
        pytest.param(_k("color"), "color_red", "expected one of COLOR_UNSPECIFIED",
                     id="enum-name-is-case-sensitive"),
        pytest.param(_k("color"), "99999999999999", '"99999999999999" is not a Color '
                     "name or number; out of range", id="enum-huge-number"),
        pytest.param(_k("name"), "a\ud800", "value is not valid UTF-8", id="string-surrogate"),
    ],
)  # fmt: skip
def test_convert_scalar_rejects(field: FieldDescriptor, text: str, reason: str) -> None:
    with pytest.raises(FieldError) as info:
        convert_scalar(field, text, param="the.param")
    assert info.value.param == "the.param"
    assert reason in info.value.reason


def test_convert_scalar_refuses_plain_messages() -> None:
    with pytest.raises(FieldError) as info:
        convert_scalar(_k("inner"), "x", param="inner")
    assert info.value.reason == "Inner is an object, not a single value; name its fields"


# --- well-known types ----------------------------------------------------------------


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def _list(value: list[Any]) -> struct_pb2.ListValue:
    message = struct_pb2.ListValue()
    message.extend(value)
    return message


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("at=2026-11-22T10:00:00Z", Kitchen(at=timestamp_pb2.Timestamp(
            seconds=1795341600)), id="timestamp-utc"),
        pytest.param("at=2026-11-22T11:00:00.5%2B01:00", Kitchen(at=timestamp_pb2.Timestamp(
            seconds=1795341600, nanos=500_000_000)), id="timestamp-offset-fraction"),
        pytest.param("at=2026-11-22T05:00:00.000000001-05:00", Kitchen(at=timestamp_pb2.Timestamp(
            seconds=1795341600, nanos=1)), id="timestamp-nanos"),
        pytest.param("at=2026-11-22t10:00:00z", Kitchen(at=timestamp_pb2.Timestamp(
            seconds=1795341600)), id="timestamp-lower-case"),
        pytest.param("ttl=1.5s", Kitchen(ttl=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
                     id="duration-fraction"),
        pytest.param("ttl=-3s", Kitchen(ttl=duration_pb2.Duration(seconds=-3)),
                     id="duration-negative"),
        pytest.param("ttl=0.000001s", Kitchen(ttl=duration_pb2.Duration(nanos=1000)),
                     id="duration-micro"),
        pytest.param("ttl=-0.5s", Kitchen(ttl=duration_pb2.Duration(nanos=-500_000_000)),
                     id="duration-negative-fraction"),
        pytest.param("ttl=0s", Kitchen(ttl=duration_pb2.Duration()), id="duration-zero"),
        pytest.param("update_mask=displayName,inner.childLabel", Kitchen(
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "inner.child_label"])),
            id="field-mask-camel"),
        pytest.param("updateMask=display_name,labels", Kitchen(
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "labels"])),
            id="field-mask-snake-kept"),
        pytest.param("update_mask=a,,b", Kitchen(update_mask=field_mask_pb2.FieldMask(
            paths=["a", "b"])), id="field-mask-empty-segment"),
        pytest.param("maybeName=hi", Kitchen(maybe_name=wrappers_pb2.StringValue(value="hi")),
                     id="string-value"),
        pytest.param("maybe_name=a,b", Kitchen(maybe_name=wrappers_pb2.StringValue(value="a,b")),
                     id="string-value-comma"),
        pytest.param("maybe_count=-12", Kitchen(maybe_count=wrappers_pb2.Int64Value(value=-12)),
                     id="int64-value"),
        pytest.param("maybe_flag=false", Kitchen(maybe_flag=wrappers_pb2.BoolValue(value=False)),
                     id="bool-value-false-is-present"),
        pytest.param("maybe_double=NaN", None, id="double-value-nan"),
        pytest.param("maybe_double=2.5", Kitchen(maybe_double=wrappers_pb2.DoubleValue(
            value=2.5)), id="double-value"),
        pytest.param("maybe_bytes=aGk", Kitchen(maybe_bytes=wrappers_pb2.BytesValue(value=b"hi")),
                     id="bytes-value"),
        pytest.param('attrs={"a":1,"b":[true,null],"c":{"d":"e"}}', Kitchen(attrs=_struct(
            {"a": 1, "b": [True, None], "c": {"d": "e"}})), id="struct"),
        pytest.param("any_value=42", Kitchen(any_value=struct_pb2.Value(number_value=42)),
                     id="value-number"),
        pytest.param("any_value=hello", Kitchen(any_value=struct_pb2.Value(string_value="hello")),
                     id="value-plain-string"),
        pytest.param('any_value="42"', Kitchen(any_value=struct_pb2.Value(string_value="42")),
                     id="value-json-string"),
        pytest.param("any_value=true", Kitchen(any_value=struct_pb2.Value(bool_value=True)),
                     id="value-bool"),
        pytest.param("any_value=null", Kitchen(any_value=struct_pb2.Value(
            null_value=struct_pb2.NULL_VALUE)), id="value-null"),
        pytest.param("any_value=[1", Kitchen(any_value=struct_pb2.Value(string_value="[1")),
                     id="value-broken-json-is-a-string"),
        pytest.param('any_value={"x":[1]}', Kitchen(any_value=struct_pb2.Value(
            struct_value=_struct({"x": [1]}))), id="value-object"),
        pytest.param('list_value=[1,"a"]', Kitchen(list_value=_list([1, "a"])),
                     id="list-value-json"),
        pytest.param("list_value=a&list_value=2", Kitchen(list_value=_list(["a", 2])),
                     id="list-value-repeated"),
        pytest.param("list_value=[1]&list_value=[2]", Kitchen(list_value=_list([[1], [2]])),
                     id="list-value-repeated-arrays-nest"),
        pytest.param("list_value=x", Kitchen(list_value=_list(["x"])),
                     id="list-value-single-plain"),
        pytest.param("list_value=[]", Kitchen(list_value=_list([])), id="list-value-empty"),
    ],
)  # fmt: skip
def test_well_known_types(text: str, want: Any) -> None:
    got = query(text)
    if want is None:  # NaN != NaN, so compare the JSON form
        assert as_dict(got) == {"maybe_double": "NaN"}
    else:
        assert got == want


def test_list_value_presence_when_empty() -> None:
    assert query("list_value=[]").HasField("list_value")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("maybe_float=1.5", {"maybe_float": 1.5}, id="float-value"),
        pytest.param("maybeI32=-5", {"maybe_i32": -5}, id="int32-value"),
        pytest.param("maybe_u32=4294967295", {"maybe_u32": 4294967295}, id="uint32-value"),
        pytest.param("maybe_u64=18446744073709551615", {"maybe_u64": "18446744073709551615"},
                     id="uint64-value"),
        pytest.param("stamps=2026-11-22T10:00:00Z&stamps=1970-01-01T00:00:00Z",
                     {"stamps": ["2026-11-22T10:00:00Z", "1970-01-01T00:00:00Z"]},
                     id="repeated-timestamp"),
        pytest.param("times[a]=2026-11-22T10:00:00Z", {"times": {"a": "2026-11-22T10:00:00Z"}},
                     id="map-of-timestamps"),
        pytest.param("by_id[42]=x&by_id[-1]=y", {"by_id": {"42": "x", "-1": "y"}},
                     id="map-int64-keys"),
        pytest.param("by_flag[true]=a&by_flag[0]=b", {"by_flag": {"true": "a", "false": "b"}},
                     id="map-bool-keys"),
        pytest.param("sub.by_id[5]=x&sub.sub.sf32=-1", {"sub": {"by_id": {"5": "x"},
                     "sub": {"sf32": -1}}}, id="nested-map"),
    ],
)  # fmt: skip
def test_other_pool(text: str, want: dict[str, Any]) -> None:
    assert as_dict(query(text, Extra())) == want


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("at=2026-11-22", '"2026-11-22" is not an RFC 3339 timestamp such as '
                     "2026-11-22T10:00:00Z", id="timestamp-date-only"),
        pytest.param("at=2026-11-22 10:00:00Z", "is not an RFC 3339 timestamp",
                     id="timestamp-space"),
        pytest.param("at=2026-11-22T10:00:00", "is not an RFC 3339 timestamp",
                     id="timestamp-no-offset"),
        pytest.param("at=2026-1-2T1:2:3Z", "is not an RFC 3339 timestamp",
                     id="timestamp-unpadded"),
        pytest.param("at=2026-11-22T10:00:00%2B25:00", "is not an RFC 3339 timestamp",
                     id="timestamp-offset-hours"),
        pytest.param("at=2026-11-22T10:00:00.1234567891Z", "is not an RFC 3339 timestamp",
                     id="timestamp-ten-fraction-digits"),
        pytest.param("at=2026-02-30T00:00:00Z", "; day is out of range for month",
                     id="timestamp-february-30"),
        pytest.param("at=0000-01-01T00:00:00Z", "is not an RFC 3339 timestamp",
                     id="timestamp-year-0"),
        pytest.param("at=yesterday", '"yesterday" is not an RFC 3339 timestamp',
                     id="timestamp-word"),
        pytest.param("ttl=1h30m", '"1h30m" is not a duration in seconds such as 1.5s',
                     id="duration-go-syntax"),
        pytest.param("ttl=1.5", '"1.5" is not a duration', id="duration-no-unit"),
        pytest.param("ttl=%201s", '" 1s" is not a duration', id="duration-space"),
        pytest.param("ttl=1_0s", '"1_0s" is not a duration', id="duration-underscore"),
        pytest.param("ttl=1.1234567891s", "is not a duration", id="duration-ten-digits"),
        pytest.param("ttl=315576000001s", '"315576000001s" is not a duration in seconds such as '
                     "1.5s; out of range", id="duration-out-of-range"),
        pytest.param("maybe_count=ten", '"ten" is not a decimal int64', id="int64-value-word"),
        pytest.param("maybe_count=9223372036854775808", "is not a decimal int64; out of range",
                     id="int64-value-overflow"),
        pytest.param("maybe_flag=yes", "is not a bool",
                     id="bool-value-word"),
        pytest.param("maybe_bytes=%21", "is not base64 bytes",
                     id="bytes-value-garbage"),
        pytest.param("attrs=[1]", '"[1]" is not a JSON object', id="struct-array"),
        pytest.param("attrs=nope", '"nope" is not a JSON object', id="struct-word"),
        pytest.param("attrs=" + "%5B" * 5000, "is not a JSON object", id="struct-deep"),
        pytest.param("attrs=" + '{"a":' * 200 + "1" + "}" * 200, "is not a JSON object",
                     id="struct-too-deep-for-json-format"),
    ],
)  # fmt: skip
def test_well_known_types_reject(text: str, reason: str) -> None:
    error = query_error(text)
    assert error.param == text.partition("=")[0]
    assert reason in error.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("maybe_float=1e39", "is not a float",
                     id="float-value-overflow"),
        pytest.param("maybe_i32=2147483648", "is not a decimal int32; out of range",
                     id="int32-value-overflow"),
        pytest.param("maybe_u32=-1", "is not a decimal uint32; out of range",
                     id="uint32-value-negative"),
        pytest.param("maybe_u64=18446744073709551616", "is not a decimal uint64; out of range",
                     id="uint64-value-overflow"),
        pytest.param("nothing=x", "Empty cannot be set from a query parameter",
                     id="empty"),
        pytest.param("blob=x", "Any cannot be set from a query parameter",
                     id="any"),
        pytest.param("by_id[x]=1", 'map key "x" is not a decimal int64', id="map-int-key-word"),
        pytest.param("by_id[9223372036854775808]=1", "map key", id="map-int-key-overflow"),
        pytest.param("by_flag[yes]=1", 'map key "yes" is not a bool', id="map-bool-key-word"),
        pytest.param("children[a]=x", "Extra is an object, not a single value",
                     id="map-of-messages"),
        pytest.param("children[a].sf32=1", 'unknown field "children[a]"',
                     id="map-entry-fields"),
        pytest.param("times[a]=soon", '"soon" is not an RFC 3339 timestamp',
                     id="map-timestamp-value"),
    ],
)  # fmt: skip
def test_other_pool_rejects(text: str, reason: str) -> None:
    assert reason in query_error(text, Extra()).reason


def test_field_mask_from_convert_scalar_empty() -> None:
    mask = convert_scalar(_k("update_mask"), "", param="update_mask")
    assert mask == field_mask_pb2.FieldMask()


def test_well_known_types_from_a_second_pool() -> None:
    """WKT values are built in the field's own class; CopyFrom refuses foreign ones."""
    other = _other_pool_kitchen_class()
    message = query(
        'at=2026-11-22T10:00:00Z&maybe_name=x&attrs={"a":1}&list_value=a&list_value=b', other()
    )
    assert as_dict(message) == {
        "at": "2026-11-22T10:00:00Z",
        "maybe_name": "x",
        "attrs": {"a": 1.0},
        "list_value": ["a", "b"],
    }


# --- resolve_path --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dotted", "want"),
    [
        pytest.param("name", ["name"], id="proto-name"),
        pytest.param("inner.label", ["inner", "label"], id="nested-proto-names"),
        pytest.param("inner.child.count", ["inner", "child", "count"], id="deep"),
        pytest.param("customName", ["custom_json"], id="custom-json-name"),
        pytest.param("custom_json", ["custom_json"], id="custom-proto-name"),
        pytest.param("maybeName", ["maybe_name"], id="json-name"),
        pytest.param("maybe_name", ["maybe_name"], id="proto-name-with-underscore"),
        pytest.param("updateMask", ["update_mask"], id="json-name-wkt"),
        pytest.param("choiceB", ["choice_b"], id="oneof-member"),
        pytest.param("labels", ["labels"], id="map"),
        pytest.param("inners", ["inners"], id="repeated-message-as-leaf"),
    ],
)
def test_resolve_path(dotted: str, want: list[str]) -> None:
    assert [f.name for f in resolve_path(KITCHEN, dotted)] == want


def test_resolve_path_is_cached_per_descriptor() -> None:
    first = resolve_path(KITCHEN, "inner.label")
    assert resolve_path(KITCHEN, "inner.label") is first
    other = _other_pool_kitchen_class().DESCRIPTOR
    assert other.full_name == KITCHEN.full_name
    (at,) = resolve_path(other, "at")
    assert at is other.fields_by_name["at"]
    assert at is not KITCHEN.fields_by_name["at"]


@pytest.mark.parametrize(
    ("dotted", "reason"),
    [
        pytest.param("bogus", "unknown field", id="top-level"),
        pytest.param("inner.bogus", "unknown field", id="nested"),
        pytest.param("bogus.name", 'unknown field "bogus"', id="unknown-parent"),
        pytest.param(
            "customJson",
            "unknown field",
            id="camel-case-is-not-json-name",
        ),
        pytest.param("Name", "unknown field", id="case-sensitive"),
        pytest.param("", "empty field name", id="empty"),
        pytest.param("inner.", "empty field name", id="trailing-dot"),
        pytest.param(".name", "empty field name", id="leading-dot"),
        # upb's fields_by_name raises SystemError for these; resolve_path must not.
        pytest.param("na\udc80me", "unknown field", id="lone-surrogate"),
    ],
)
def test_resolve_path_unknown(dotted: str, reason: str) -> None:
    with pytest.raises(UnknownParameter) as info:
        resolve_path(KITCHEN, dotted)
    assert info.value.param == dotted
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("dotted", "reason"),
    [
        pytest.param("name.x", 'cannot set sub-fields of "name" (string)', id="scalar"),
        pytest.param("color.x", 'cannot set sub-fields of "color" (Color)', id="enum"),
        pytest.param("tags.x", 'cannot set sub-fields of "tags" (array of string)',
                     id="repeated-scalar"),
        pytest.param("inners.label", 'cannot set sub-fields of "inners" (array of '
                     "Inner)", id="repeated-message"),
        pytest.param("labels.env", 'cannot set sub-fields of "labels" (map of string to string)',
                     id="map"),
        pytest.param("at.seconds", 'cannot set sub-fields of "at" (timestamp)',
                     id="timestamp"),
        pytest.param("maybeName.value", 'cannot set sub-fields of "maybe_name" '
                     "(string)", id="wrapper"),
        pytest.param("attrs.a", 'cannot set sub-fields of "attrs" (JSON object)',
                     id="struct"),
        pytest.param("inner.label.x", 'cannot set sub-fields of "label" (string)',
                     id="nested-scalar"),
    ],
)  # fmt: skip
def test_resolve_path_refuses_non_message_parents(dotted: str, reason: str) -> None:
    with pytest.raises(FieldError) as info:
        resolve_path(KITCHEN, dotted)
    assert type(info.value) is FieldError
    assert info.value.reason == reason


def test_resolve_path_errors_name_the_param() -> None:
    with pytest.raises(UnknownParameter) as info:
        resolve_path(KITCHEN, "bogus", param="bogus[key]")
    assert info.value.param == "bogus[key]"


# --- set_field -----------------------------------------------------------------------


def _set(message: Any, dotted: str, *values: str, map_key: str | None = None) -> None:
    path = resolve_path(message.DESCRIPTOR, dotted)
    set_field(message, path, values, param=dotted, map_key=map_key)


def test_set_field_creates_parents() -> None:
    message = Kitchen()
    _set(message, "inner.child.label", "x")
    assert message == Kitchen(inner=Inner(child=Inner(label="x")))


def test_set_field_creates_parents_for_default_values() -> None:
    message = Kitchen()
    _set(message, "inner.count", "0")
    assert message.HasField("inner")


def test_set_field_appends_to_repeated_fields() -> None:
    message = Kitchen(tags=["a"])
    _set(message, "tags", "b", "c")
    _set(message, "colors", "COLOR_RED", "2")
    assert message == Kitchen(tags=["a", "b", "c"], colors=[1, 2])


def test_set_field_replaces_singular_values() -> None:
    message = Kitchen(name="old", at=timestamp_pb2.Timestamp(seconds=1, nanos=5))
    _set(message, "name", "new")
    _set(message, "at", "1970-01-01T00:00:02Z")
    assert message == Kitchen(name="new", at=timestamp_pb2.Timestamp(seconds=2))


def test_set_field_refuses_several_values_for_a_singular_field() -> None:
    with pytest.raises(FieldError) as info:
        _set(Kitchen(), "name", "a", "b")
    assert str(info.value) == (
        'invalid parameter "name": given more than once, but the field takes a single string'
    )


def test_set_field_converts_everything_before_writing() -> None:
    message = Kitchen()
    with pytest.raises(FieldError, match='"x" is not a decimal int32'):
        _set(message, "numbers", "1", "x")
    with pytest.raises(FieldError):
        _set(message, "inner.count", "x")
    assert message == Kitchen()
    assert not message.HasField("inner")


def test_set_field_refuses_a_second_oneof_member() -> None:
    message = Kitchen(choice_a="x")
    with pytest.raises(FieldError) as info:
        _set(message, "choiceB", "1")
    assert str(info.value) == (
        'invalid parameter "choiceB": "choice_a" of oneof "choice" is already set'
    )
    assert message == Kitchen(choice_a="x")


def test_set_field_may_reset_the_same_oneof_member() -> None:
    message = Kitchen(choice_b=1)
    _set(message, "choice_b", "2")
    _set(message, "opt_text", "a")
    _set(message, "optText", "b")  # proto3 optional: a synthetic one-member oneof
    assert message == Kitchen(choice_b=2, opt_text="b")


def test_set_field_sets_oneof_members_to_their_default() -> None:
    message = Kitchen()
    _set(message, "choice_b", "0")
    assert message.WhichOneof("choice") == "choice_b"


def test_set_field_map_entries() -> None:
    message = Kitchen(labels={"a": "1"})
    _set(message, "labels", "2", map_key="b")
    _set(message, "labels", "3", map_key="a")
    _set(message, "counters", "-4", map_key="n")
    assert message == Kitchen(labels={"a": "3", "b": "2"}, counters={"n": -4})


@pytest.mark.parametrize(
    ("dotted", "map_key", "values", "reason"),
    [
        pytest.param("labels", None, ["x"], "a map takes entries as labels[key]=value",
                     id="map-without-key"),
        pytest.param("labels", "k", ["x", "y"], "given more than once", id="map-two-values"),
        pytest.param("tags", "0", ["x"], '"tags" (array of string) is not a map',
                     id="key-on-repeated"),
        pytest.param("name", "k", ["x"], '"name" (string) is not a map', id="key-on-scalar"),
        pytest.param("counters", "k", ["x"], '"x" is not a decimal int32', id="map-value"),
        pytest.param("inners", None, ["x"], "Inner is an object", id="repeated-message"),
    ],
)  # fmt: skip
def test_set_field_rejects(
    dotted: str, map_key: str | None, values: list[str], reason: str
) -> None:
    with pytest.raises(FieldError) as info:
        _set(Kitchen(), dotted, *values, map_key=map_key)
    assert info.value.reason == reason or reason in info.value.reason


def test_set_field_without_values_does_nothing() -> None:
    message = Kitchen()
    _set(message, "inner.label")
    assert not message.HasField("inner")


def test_set_field_empty_path() -> None:
    with pytest.raises(FieldError, match="empty field path"):
        set_field(Kitchen(), (), ["x"], param="p")


@pytest.mark.parametrize(
    ("path", "text", "reason"),
    [
        # Issue 8 item 4: upb narrowed 4294967297 (2^32 + 1) to 1, COLOR_RED.
        ("color", "4294967297", '"4294967297" is not a Color name or number; '
         "out of range"),
        ("color", "-2147483649", '"-2147483649" is not a Color name or number; '
         "out of range"),
        ("inner.count", "4294967297", '"4294967297" is not a decimal int32; out of range'),
        ("s32", "-2147483649", '"-2147483649" is not a decimal int32; out of range'),
        ("f64", "18446744073709551616", '"18446744073709551616" is not a decimal uint64; '
         "out of range"),
        ("colors", "4294967298", '"4294967298" is not a Color name or number; '
         "out of range"),
    ],
)  # fmt: skip
def test_path_captures_are_range_checked_before_narrowing(
    path: str, text: str, reason: str
) -> None:
    """A path capture is set by set_field, as a query value is (gateway/request.py)."""
    with pytest.raises(FieldError) as info:
        set_field(Kitchen(), resolve_path(KITCHEN, path), [text], param=path)
    assert (info.value.param, info.value.reason) == (path, reason)


def test_enum_numbers_at_the_int32_ends_are_looked_up_not_wrapped() -> None:
    assert convert_scalar(_k("color"), "2", param="color") == 2
    for text in ("2147483647", "-2147483648"):
        with pytest.raises(FieldError) as info:
            convert_scalar(_k("color"), text, param="color")
        assert info.value.reason.endswith("expected one of COLOR_UNSPECIFIED, COLOR_RED, "
                                          "COLOR_GREEN or its number")  # fmt: skip


# --- apply_query ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("tags=a&tags=b", Kitchen(tags=["a", "b"]), id="repeated"),
        pytest.param("tags=a,b", Kitchen(tags=["a,b"]), id="no-comma-split"),
        pytest.param("tags=a&name=x&tags=b", Kitchen(tags=["a", "b"], name="x"),
                     id="repeated-interleaved"),
        pytest.param("numbers=1&numbers=-2", Kitchen(numbers=[1, -2]), id="repeated-int32"),
        pytest.param("colors=COLOR_RED&colors=2", Kitchen(colors=[1, 2]), id="repeated-enum"),
        pytest.param("labels[env]=prod&labels[tier]=web", Kitchen(labels={"env": "prod",
                     "tier": "web"}), id="map"),
        pytest.param("labels[a.b]=1&labels[x[y]]=2&labels[]=3", Kitchen(labels={"a.b": "1",
                     "x[y]": "2", "": "3"}), id="map-odd-keys"),
        pytest.param("counters[a]=3", Kitchen(counters={"a": 3}), id="map-int-values"),
        pytest.param("inner.label=x&inner.count=2&inner.child.label=y", Kitchen(inner=Inner(
            label="x", count=2, child=Inner(label="y"))), id="nested"),
        pytest.param("customName=z", Kitchen(custom_json="z"), id="json-name"),
        pytest.param("i32=&name=x", Kitchen(name="x"), id="blank-value-dropped"),
        pytest.param("maybe_name=", Kitchen(), id="blank-wrapper-dropped"),
        pytest.param("labels[k]=", Kitchen(), id="blank-map-value-dropped"),
        pytest.param("tags=&tags=a", Kitchen(tags=["", "a"]), id="blank-in-repeated-kept"),
        pytest.param("", Kitchen(), id="nothing"),
    ],
)  # fmt: skip
def test_apply_query(text: str, want: Any) -> None:
    assert query(text) == want


def test_apply_query_blank_values_twice_still_count() -> None:
    """Only a lone blank value is dropped (grpc-gateway drops keys whose values are [""])."""
    assert (
        query_error("i32=&i32=").reason
        == "given more than once, but the field takes a single int32"
    )


@pytest.mark.parametrize(
    ("text", "param", "reason"),
    [
        pytest.param("name=a&name=b", "name",
                     "given more than once, but the field takes a single string",
                     id="singular-twice"),
        pytest.param("opt_text=a&optText=b", "opt_text", "given more than once",
                     id="proto-and-json-name"),
        pytest.param("choice_a=x&choiceB=1", "choiceB", '"choice_a" of oneof "choice" is already '
                     "set", id="oneof"),
        pytest.param("labels[a]=1&labels[a]=2", "labels[a]", "given more than once",
                     id="map-key-twice"),
        pytest.param("labels=x", "labels", "a map takes entries as labels[key]=value",
                     id="map-without-key"),
        pytest.param("tags[0]=x", "tags[0]", '"tags" (array of string) is not a map',
                     id="index-on-list"),
        pytest.param("counters[a]=x", "counters[a]", '"x" is not a decimal int32',
                     id="map-value"),
        pytest.param("inner=x", "inner", "Inner is an object, not a single value",
                     id="message-field"),
        pytest.param("inners=x", "inners", "Inner is an object", id="repeated-message"),
        pytest.param("inners.label=x", "inners.label", 'cannot set sub-fields of "inners"',
                     id="repeated-message-field"),
        pytest.param("bogus=", "bogus", "unknown field", id="unknown-with-blank-value"),
        pytest.param("labels[a=1", "labels[a", "unknown field", id="unclosed-bracket"),
        pytest.param("labels[a]x=1", "labels[a]x", "unknown field", id="text-after-bracket"),
    ],
)  # fmt: skip
def test_apply_query_rejects(text: str, param: str, reason: str) -> None:
    error = query_error(text)
    assert error.param == param
    assert reason in error.reason


def test_apply_query_oneof_set_by_the_body() -> None:
    error = query_error("choice_b=1", Kitchen(choice_a="from body"))
    assert error.reason == '"choice_a" of oneof "choice" is already set'


@pytest.mark.parametrize(
    ("text", "bound", "want"),
    [
        pytest.param("id=q&name=y", [("id",)], Kitchen(id="path", name="y"), id="bound-field"),
        pytest.param("inner.label=x&inner.bogus=1&inner.child.count=1", [("inner",)],
                     Kitchen(id="path"), id="under-bound-message"),
        pytest.param("customName=x", [("custom_json",)], Kitchen(id="path"),
                     id="json-name-of-bound"),
        pytest.param("inner.label=x&inner.count=3", [("inner", "label")],
                     Kitchen(id="path", inner=Inner(count=3)), id="sibling-of-bound"),
        pytest.param("labels[a]=b&labels=oops", [("labels",)], Kitchen(id="path"),
                     id="bound-map"),
        pytest.param("name=x", [("name", "deeper")], Kitchen(id="path", name="x"),
                     id="ancestor-of-bound-is-not-bound"),
        pytest.param("id=q", [], Kitchen(id="q"), id="nothing-bound"),
    ],
)  # fmt: skip
def test_apply_query_skips_bound_paths(text: str, bound: list[tuple[str, ...]], want: Any) -> None:
    assert query(text, Kitchen(id="path"), bound=bound) == want


def test_apply_query_unknown_parameters() -> None:
    assert query("bogus=1&name=x&inner.bogus=2", allow_unknown=True) == Kitchen(name="x")
    error = query_error("name=x&bogus=1")
    assert type(error) is UnknownParameter
    assert error.param == "bogus"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name.x=1", id="scalar-parent"),
        pytest.param("i32=abc", id="bad-value"),
        pytest.param("inner=x", id="message-field"),
    ],
)
def test_allow_unknown_keeps_other_errors(text: str) -> None:
    assert type(query_error(text, allow_unknown=True)) is FieldError


# --- fuzzing (grpc-gateway: runtime/query_fuzz_test.go) ------------------------------

_VOCABULARY = sorted(
    {f.name for f in KITCHEN.fields}
    | {f.json_name for f in KITCHEN.fields}
    | {f.name for f in EXTRA.fields}
    | {"inner.label", "inner.child.count", "inner.child.child", "labels[x]", "counters[1]",
       "tags[0]", "inners.label", "at.seconds", "by_id[5]", "by_flag[t]", "sub.by_id[x]",
       "times[a]", "children[a]", "", ".", "[", "]", "[]", "a[b][c]", "name.", "\ud800",
       "inner.\udcff", "labels[\ud800]"}
)  # fmt: skip
_WORDS = [
    "", "0", "-1", "+1", "1e999", "NaN", "-Infinity", "true", "t", "COLOR_RED", "7",
    "2026-11-22T10:00:00Z", "9999-12-31T23:59:59.999999999Z", "2026-02-30T00:00:00Z",
    "1.5s", "-315576000001s", "[1]", "{}", '{"a":', "null", "[" * 3000, '{"a":' * 150,
    "a,b", "9" * 30, "\ud800", "\x00", "aGk=", "-_8", "=", "%",
]  # fmt: skip
_TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
_NAMES = st.one_of(
    st.sampled_from(_VOCABULARY),
    _TEXT,
    st.builds("{}.{}".format, st.sampled_from(_VOCABULARY), st.sampled_from(_VOCABULARY)),
    st.builds("{}[{}]".format, st.sampled_from(_VOCABULARY), _TEXT),
)
_VALUES = st.one_of(st.sampled_from(_WORDS), _TEXT)
_PARAMS = st.lists(st.tuples(_NAMES, _VALUES), max_size=8)
_BOUND = st.lists(st.lists(st.sampled_from(_VOCABULARY), min_size=1, max_size=2).map(tuple))


@settings(max_examples=400, deadline=None, database=None)
@given(params=_PARAMS, bound=_BOUND, allow_unknown=st.booleans())
def test_apply_query_raises_only_field_errors(
    params: list[tuple[str, str]], bound: list[tuple[str, ...]], allow_unknown: bool
) -> None:
    for message in (Kitchen(), Extra()):
        try:
            apply_query(message, params, bound=bound, allow_unknown=allow_unknown)
        except FieldError as error:
            assert str(error).startswith(f'invalid parameter "{error.param}": ')


@settings(max_examples=300, deadline=None, database=None)
@given(
    field=st.sampled_from([*KITCHEN.fields, *EXTRA.fields]),
    text=_VALUES,
    map_key=st.one_of(st.none(), _VALUES),
)
def test_set_field_raises_only_field_errors(
    field: FieldDescriptor, text: str, map_key: str | None
) -> None:
    message = Kitchen() if field.containing_type is KITCHEN else Extra()
    try:
        set_field(message, (field,), [text], param="p", map_key=map_key)
    except FieldError as error:
        assert error.param == "p"


def test_free_json_numbers_past_a_double_are_refused_or_strings() -> None:
    """An integer past a double cannot be a Struct number (it raised OverflowError, a 500):
    a Struct refuses it, a Value keeps the text as a string, as for `1e400`."""
    big = "1" + "0" * 400
    assert query_error(f'attrs={{"a":{big}}}').reason.endswith("is not a JSON object")
    assert as_dict(query(f"any_value={big}")) == {"any_value": big}
    assert as_dict(query("any_value=1e400")) == {"any_value": "1e400"}
