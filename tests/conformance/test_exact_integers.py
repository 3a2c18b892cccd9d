"""Free JSON (Struct, Value, ListValue) takes no integer a double cannot hold exactly.

Fault (issue 13 critic, item 1): a body member `{"k": 9007199254740993}` of a Struct
field reached the service as 9007199254740992, and 12345678901234567890 as
1.2345678901234567e+19: the proto3 JSON mapping carries every Value number as an
IEEE 754 double, which holds each integer up to 2^53 exactly and not 2^53 + 1. Such
integers are now refused with 400 INVALID_ARGUMENT naming the value's path, in the
body and in the query (`?any_value=...`), while 2^53 itself, numbers written as
doubles (`1.5`, `1e20`), the same digits as a string, and typed 64-bit fields (an
int64 takes 9007199254740993 exactly) still pass. In-process and proxy gateways.
Source: protobuf.dev/programming-guides/json (Value: number is a double),
RFC 8259 §6 (interoperable integers are within [-(2^53)+1, 2^53-1]).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conformance.test_integer_ranges import bad_request

BIG = 2**53 + 1
HINT = (
    "is an integer beyond 2^53, which a JSON value field carries as a double; send it as a string"
)


async def _post(url: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post(
            "/v1/echo", content=body, headers={"Content-Type": "application/json"}
        )


@pytest.mark.parametrize(
    ("body", "field", "shown"),
    [
        ({"attrs": {"k": BIG}}, "attrs.k", str(BIG)),
        ({"attrs": {"id": 12345678901234567890}}, "attrs.id", "12345678901234567890"),
        ({"attrs": {"o": {"list": [1, -BIG]}}}, "attrs.o.list[1]", str(-BIG)),
        ({"anyValue": BIG}, "anyValue", str(BIG)),
        ({"anyValue": [1, {"x": 2**63}]}, "anyValue[1].x", str(2**63)),
        ({"listValue": [None, 10**300]}, "listValue[1]", "1" + "0" * 39 + "..."),
        ({"inner": {"label": "x"}, "attrs": {"a": {"b": BIG}}}, "attrs.a.b", str(BIG)),
    ],
)  # fmt: skip
async def test_integers_beyond_2_53_are_refused_naming_their_path(
    gateway_url: str, body: dict[str, Any], field: str, shown: str
) -> None:
    response = await _post(gateway_url, json.dumps(body).encode())
    assert response.status_code == 400
    message = f'invalid body field "{field}": {shown} {HINT}'
    assert response.json() == bad_request(message, "INVALID_BODY", field)


async def test_exact_numbers_doubles_and_strings_pass_unchanged(gateway_url: str) -> None:
    body = (
        b'{"attrs": {"top": 9007199254740992, "low": -9007199254740992, "n": 1.5,'
        b' "e": 1e20, "s": "9007199254740993"}, "anyValue": [9007199254740991],'
        b' "listValue": [-9007199254740991]}'
    )
    response = await _post(gateway_url, body)
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["attrs"] == {
        "top": 9007199254740992,
        "low": -9007199254740992,
        "n": 1.5,
        "e": 1e20,
        "s": "9007199254740993",
    }
    assert echoed["anyValue"] == [9007199254740991]
    assert echoed["listValue"] == [-9007199254740991]


async def test_typed_64_bit_fields_keep_every_digit(gateway_url: str) -> None:
    response = await _post(gateway_url, json.dumps({"i64": BIG, "u64": 2**64 - 1}).encode())
    assert response.status_code == 200, response.text
    assert (response.json()["i64"], response.json()["u64"]) == (str(BIG), str(2**64 - 1))


@pytest.mark.parametrize(
    ("query", "param"),
    [
        (f"any_value={BIG}", "any_value"),
        (f"attrs=%7B%22k%22%3A{BIG}%7D", "attrs"),
        (f"list_value=%5B{BIG}%5D", "list_value"),
    ],
)
async def test_the_query_refuses_them_alike(gateway_url: str, query: str, param: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(f"/v1/echo/x?{query}")
    assert response.status_code == 400
    message = f'invalid parameter "{param}": {BIG} {HINT}'
    assert response.json() == bad_request(message, "INVALID_QUERY_PARAMETER", param)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        exact = await client.get(f"/v1/echo/x?any_value={2**53}")
    assert exact.status_code == 200 and exact.json()["anyValue"] == 2**53
