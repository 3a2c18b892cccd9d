"""Any JSON value as `google.protobuf.Value` and back: job payloads and results.

The API carries payloads and results as `google.protobuf.Value` (JSON's data model,
RFC 8259 §3: null, boolean, number, string, array, object). Python callers work with
the plain values `json.loads` gives. A `Value` number is an IEEE double, so JSON has
no integer/float distinction on the wire; `from_value` gives an integral number back
as `int` (2.0 → 2), as `json.loads("2")` would.
"""

from __future__ import annotations

import json
import math
from typing import TypeAlias

from google.protobuf import json_format, struct_pb2

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

# Integers up to 2**53 are exact in a double (IEEE 754 binary64 has a 53-bit significand).
_EXACT_INT = 2**53


def to_value(value: object) -> struct_pb2.Value:
    """`value` as a `Value`: JSON's types only (tuples become arrays).

    Raises TypeError for a value JSON cannot hold (a set, bytes, an object key that is
    not a string, ...) and ValueError for NaN or an infinity (not JSON numbers,
    RFC 8259 §6), a circular structure, or an integer beyond 2^53: a `Value` carries
    numbers as doubles, which hold every integer up to 2^53 but not 2^53 + 1, so such
    an integer would arrive changed (send it as a string). The REST gateway refuses
    the same integers in a JSON body with 400.
    """
    text = json.dumps(value, allow_nan=False)  # TypeError / ValueError as documented
    decoded = json.loads(text)  # tuples as lists, int subclasses (bool aside) as ints
    inexact = _inexact_integer(decoded)
    if inexact is not None:
        raise ValueError(
            f"{inexact} is an integer beyond 2^53, which a JSON value field carries as a "
            "double; send it as a string"
        )
    return json_format.ParseDict(decoded, struct_pb2.Value())


def _inexact_integer(value: object) -> int | None:
    """The first integer of magnitude beyond 2^53 in decoded JSON, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) > _EXACT_INT:
                return item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def from_value(value: struct_pb2.Value) -> JsonValue:
    """The plain Python value of `value`; a `Value` with no kind set is None."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        if math.isfinite(number) and number.is_integer() and abs(number) <= _EXACT_INT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return {key: from_value(item) for key, item in value.struct_value.fields.items()}
