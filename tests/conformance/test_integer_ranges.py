"""Integers are range-checked before they are narrowed, in the query and in the body.

Fault (issue 8, item 4): `GET /v1/echo/x?color=4294967297` answered COLOR_RED, the
number narrowed modulo 2^32 (upb's enum lookup), and a JSON body did the same for
enum numbers. Every integer kind of Kitchen (int32, sint32, int64, uint32, uint64,
fixed64, enums, repeated and map values, an Int64Value, a oneof member and a nested
message's int32) is tried at both ends of its range and one past each, as a query
parameter and as a JSON body value (number and string): the ends are echoed, the
others are 400 INVALID_ARGUMENT naming the field. The kinds Kitchen lacks (sint64,
fixed32, sfixed32/64) are covered in tests/unit/gateway/test_json_parser.py and
test_fields.py; a path capture goes through the same converter as a query value.

Sources: protobuf language guide (scalar value types, enums are int32), proto3 JSON
mapping, grpc-gateway runtime/query.go (strconv.ParseInt with a bit size).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

INT32, INT64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
UINT32, UINT64 = (0, 2**32 - 1), (0, 2**64 - 1)
# JSON name -> (proto type in messages, bounds, 64-bit: printed as a string)
SCALARS = {
    "i32": ("int32", INT32, False),
    "s32": ("int32", INT32, False),
    "i64": ("int64", INT64, True),
    "u32": ("uint32", UINT32, False),
    "u64": ("uint64", UINT64, True),
    "f64": ("uint64", UINT64, True),
}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def bad_request(message: str, reason: str, field: str) -> dict[str, Any]:
    """The exact error document the gateway answers for a refused value."""
    return {
        "error": message,
        "code": "INVALID_ARGUMENT",
        "details": [
            {"@type": ERROR_INFO, "reason": reason, "domain": "gateway"},
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]},
        ],
    }


async def _get(url: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.get(path)


async def _post(
    url: str, body: bytes, path: str = "/v1/echo", method: str = "POST"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )


async def test_enum_number_past_int32_is_refused_in_the_query(gateway_url: str) -> None:
    response = await _get(gateway_url, "/v1/echo/x?color=4294967297")
    assert response.status_code == 400
    assert response.json() == bad_request(
        'invalid parameter "color": "4294967297" is not a Color name or number; out of range',
        "INVALID_QUERY_PARAMETER",
        "color",
    )


async def test_enum_number_past_int32_is_refused_in_the_body(gateway_url: str) -> None:
    response = await _post(gateway_url, b'{"color": 4294967297}')
    assert response.status_code == 400
    assert response.json() == bad_request(
        'invalid body field "color": 4294967297 is not a Color name or number; out of range',
        "INVALID_BODY",
        "color",
    )


@pytest.mark.parametrize(
    ("query", "param", "shown", "kind"),
    [
        ("colors=COLOR_RED&colors=-2147483649", "colors", "-2147483649", "Color name or number"),
        ("numbers=1&numbers=2147483648", "numbers", "2147483648", "decimal int32"),
        ("counters[k]=4294967296", "counters[k]", "4294967296", "decimal int32"),
        ("inner.count=-2147483649", "inner.count", "-2147483649", "decimal int32"),
        ("choice_b=2147483648", "choice_b", "2147483648", "decimal int32"),
        ("maybe_count=9223372036854775808", "maybe_count", "9223372036854775808",
         "decimal int64"),
    ],
)  # fmt: skip
async def test_containers_and_wrappers_in_the_query(
    gateway_url: str, query: str, param: str, shown: str, kind: str
) -> None:
    response = await _get(gateway_url, f"/v1/echo/x?{query}")
    assert response.status_code == 400
    message = f'invalid parameter "{param}": "{shown}" is not a {kind}; out of range'
    assert response.json() == bad_request(message, "INVALID_QUERY_PARAMETER", param)


@pytest.mark.parametrize(
    ("body", "field", "shown", "kind"),
    [
        ({"colors": ["COLOR_RED", -2147483649]}, "colors[1]", "-2147483649",
         "Color name or number"),
        ({"numbers": [1, 2147483648]}, "numbers[1]", "2147483648", "decimal int32"),
        ({"counters": {"k": 4294967296}}, "counters[k]", "4294967296", "decimal int32"),
        ({"inner": {"count": -2147483649}}, "inner.count", "-2147483649", "decimal int32"),
        ({"choiceB": 2147483648}, "choiceB", "2147483648", "decimal int32"),
        ({"maybeCount": "9223372036854775808"}, "maybeCount", '"9223372036854775808"',
         "decimal int64"),
    ],
)  # fmt: skip
async def test_containers_and_wrappers_in_the_body(
    gateway_url: str, body: dict[str, Any], field: str, shown: str, kind: str
) -> None:
    response = await _post(gateway_url, json.dumps(body).encode())
    assert response.status_code == 400
    message = f'invalid body field "{field}": {shown} is not a {kind}; out of range'
    assert response.json() == bad_request(message, "INVALID_BODY", field)


async def test_a_one_field_body_names_the_field_path(gateway_url: str) -> None:
    response = await _post(gateway_url, b'{"count": 2147483648}', "/v1/echo/x/inner", "PUT")
    assert response.status_code == 400
    message = 'invalid body field "inner.count": 2147483648 is not a decimal int32; out of range'
    assert response.json() == bad_request(message, "INVALID_BODY", "inner.count")


@pytest.mark.parametrize("name", sorted(SCALARS))
async def test_every_integer_kind_at_its_ends(gateway_url: str, name: str) -> None:
    _, (low, high), wide = SCALARS[name]
    for value in (low, high):
        printed: Any = str(value) if wide else value
        response = await _get(gateway_url, f"/v1/echo/x?{name}={value}")
        assert (response.status_code, response.json()[name]) == (200, printed)
        for body in ({name: value}, {name: str(value)}):
            response = await _post(gateway_url, json.dumps(body).encode())
            assert (response.status_code, response.json()[name]) == (200, printed)


@pytest.mark.parametrize("name", sorted(SCALARS))
async def test_every_integer_kind_past_its_ends(gateway_url: str, name: str) -> None:
    kind, (low, high), _ = SCALARS[name]
    for value in (low - 1, high + 1, high + 2**32 + 1):
        response = await _get(gateway_url, f"/v1/echo/x?{name}={value}")
        message = f'invalid parameter "{name}": "{value}" is not a decimal {kind}; out of range'
        assert response.status_code == 400
        assert response.json() == bad_request(message, "INVALID_QUERY_PARAMETER", name)
        for shown, body in ((str(value), {name: value}), (f'"{value}"', {name: str(value)})):
            response = await _post(gateway_url, json.dumps(body).encode())
            message = f'invalid body field "{name}": {shown} is not a decimal {kind}; out of range'
            assert response.status_code == 400
            assert response.json() == bad_request(message, "INVALID_BODY", name)


async def test_enum_ends(gateway_url: str) -> None:
    """Declared numbers are taken; an int32 the enum does not declare is refused as in
    grpc-gateway's query parser, and the body agrees."""
    response = await _get(gateway_url, "/v1/echo/x?color=2")
    assert (response.status_code, response.json()["color"]) == (200, "COLOR_GREEN")
    response = await _post(gateway_url, b'{"color": 2}')
    assert (response.status_code, response.json()["color"]) == (200, "COLOR_GREEN")
    expected = "expected one of COLOR_UNSPECIFIED, COLOR_RED, COLOR_GREEN or its number"
    response = await _get(gateway_url, "/v1/echo/x?color=2147483647")
    assert response.json() == bad_request(
        f'invalid parameter "color": "2147483647" is not a Color name or number; {expected}',
        "INVALID_QUERY_PARAMETER",
        "color",
    )
    response = await _post(gateway_url, b'{"color": 2147483647}')
    assert response.json() == bad_request(
        f'invalid body field "color": 2147483647 is not a Color name or number; {expected}',
        "INVALID_BODY",
        "color",
    )
