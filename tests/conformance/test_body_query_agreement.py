"""One value means the same thing in the query and in the JSON body.

Fault (issue 8, item 5): the body went through json_format while path and query
values went through the gateway's own converters, so `{"data":"QUJD!!!"}` was
answered 200 with the invalid characters dropped while `?data=QUJD!!!` was 400, a
Timestamp with a lower-case `z` was taken in the query and refused in the body, a
Duration `1_0s` the other way round, and refusals quoted the runtime (`strptime`'s
"does not match format", protobuf's "Message type … has no field named …
Available Fields(except extensions)"). Each value below is sent both ways: both are
accepted with the same result, or both refused naming the field, in our words.

Sources: proto3 JSON mapping (which JSON type a field takes), RFC 3339 §5.6,
RFC 4648 §4-5 (base64, both alphabets), grpc-gateway runtime/query.go.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
RUNTIME_WORDS = ("Failed to parse", "strptime", "does not match format", "Available Fields",
                 "Message type", "TypeError", "Only base64", "Traceback")  # fmt: skip


def bad_request(message: str, reason: str, field: str) -> dict[str, Any]:
    return {
        "error": message,
        "code": "INVALID_ARGUMENT",
        "details": [
            {"@type": ERROR_INFO, "reason": reason, "domain": "gateway"},
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]},
        ],
    }


async def _both(url: str, name: str, json_name: str, value: str) -> tuple[httpx.Response, ...]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        query = await client.get(f"/v1/echo/x?{name}={quote(value, safe='')}")
        body = await client.post(
            "/v1/echo",
            content=json.dumps({"id": "x", json_name: value}).encode(),
            headers={"Content-Type": "application/json"},
        )
    return query, body


@pytest.mark.parametrize(
    ("name", "json_name", "value", "printed"),
    [
        ("data", "data", "QUJD", "QUJD"),
        ("data", "data", "-_8", "+/8="),  # URL-safe alphabet, no padding
        ("at", "at", "2026-11-22t10:00:00z", "2026-11-22T10:00:00Z"),  # RFC 3339 §5.6
        ("at", "at", "2026-11-22T12:00:00+02:00", "2026-11-22T10:00:00Z"),
        ("ttl", "ttl", "-1.5s", "-1.500s"),
        ("i64", "i64", "-12", "-12"),
        ("dbl", "dbl", "Infinity", "Infinity"),
        ("color", "color", "1", "COLOR_RED"),
        ("update_mask", "updateMask", "name,inner.label", "name,inner.label"),
        ("maybe_count", "maybeCount", "7", "7"),
    ],
)
async def test_accepted_alike(
    gateway_url: str, name: str, json_name: str, value: str, printed: str
) -> None:
    query, body = await _both(gateway_url, name, json_name, value)
    assert (query.status_code, query.json()[json_name]) == (200, printed)
    assert (body.status_code, body.json()[json_name]) == (200, printed)


@pytest.mark.parametrize(
    ("name", "json_name", "value", "reason"),
    [
        ("data", "data", "QUJD!!!", "is not base64 bytes (standard or URL-safe)"),
        ("data", "data", "ab+-", "is not base64 bytes (standard or URL-safe); mixes the "
         "standard and URL-safe alphabets"),
        ("at", "at", "2026-11-22 10:00:00Z", "is not an RFC 3339 timestamp such as "
         "2026-11-22T10:00:00Z"),
        ("at", "at", "2026-02-30T00:00:00Z", "is not an RFC 3339 timestamp such as "
         "2026-11-22T10:00:00Z; day is out of range for month"),
        ("at", "at", "2026-11-22T23:59:60Z", "is not an RFC 3339 timestamp such as "
         "2026-11-22T10:00:00Z; no such time of day"),
        ("ttl", "ttl", "1_0s", "is not a duration in seconds such as 1.5s"),
        ("ttl", "ttl", " 1s", "is not a duration in seconds such as 1.5s"),
        ("i32", "i32", "1e2", "is not a decimal int32"),
        ("i32", "i32", "0x10", "is not a decimal int32"),
        ("flt", "flt", "1e39", "is not a float (decimal, NaN, Infinity or -Infinity); "
         "out of range"),
        ("color", "color", "COLOR_BLUE", "is not a Color name or number; expected "
         "one of COLOR_UNSPECIFIED, COLOR_RED, COLOR_GREEN or its number"),
        ("update_mask", "updateMask", "Name!", "is not comma-separated field paths; "
         "'Name!' is not a field path"),
    ],
)  # fmt: skip
async def test_refused_alike_naming_the_field(
    gateway_url: str, name: str, json_name: str, value: str, reason: str
) -> None:
    query, body = await _both(gateway_url, name, json_name, value)
    shown = json.dumps(value)
    assert query.status_code == body.status_code == 400
    assert query.json() == bad_request(
        f'invalid parameter "{name}": {shown} {reason}', "INVALID_QUERY_PARAMETER", name
    )
    assert body.json() == bad_request(
        f'invalid body field "{json_name}": {shown} {reason}', "INVALID_BODY", json_name
    )


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"nope": 5}, "nope", "unknown field"),
        ({"inner": {"child": {"nope": 5}}}, "inner.child.nope", "unknown field"),
        ({"at": 5}, "at", "5 is not an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"),
        ({"name": 5}, "name", "5 is not a string"),
        ({"flag": "true"}, "flag", 'expected true or false, got the string "true"'),
        ({"tags": "x"}, "tags", 'expected a JSON array of string, got the string "x"'),
        ({"inner": [1]}, "inner", "expected a JSON object (Inner), got an array"),
        ({"labels": {"k": 1}}, "labels[k]", "1 is not a string"),
        ({"inners": [{"count": "x"}]}, "inners[0].count", '"x" is not a decimal int32'),
        ({"choiceA": "a", "choiceB": 1}, "choiceB", '"choiceA" of oneof "choice" is already set'),
        ({"customName": "a", "custom_json": "b"}, "custom_json",
         'the same field as "customName", given twice'),
    ],
)  # fmt: skip
async def test_body_refusals_name_the_field_in_our_words(
    gateway_url: str, body: dict[str, Any], field: str, message: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(
            "/v1/echo",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400
    text = f'invalid body field "{field}": {message}'
    assert response.json() == bad_request(text, "INVALID_BODY", field)
    assert [word for word in RUNTIME_WORDS if word in response.text] == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"dbl": NaN}', "malformed JSON body: NaN is not a JSON value; send it as a string"),
        (
            b'{"dbl": -Infinity}',
            "malformed JSON body: -Infinity is not a JSON value; send it as a string",
        ),
        (b'{"dbl": 1e400}', "malformed JSON body: number 1e400 is out of range"),
        (b'{"name": "\xff"}', "malformed JSON body: not UTF-8"),
        (
            b'{"attrs": {"a": 1' + b"0" * 400 + b"}}",
            "malformed JSON body: number 1" + "0" * 39 + "... is out of range",
        ),
        (
            b'{"anyValue": [1' + b"0" * 5000 + b"]}",
            "malformed JSON body: number 1" + "0" * 39 + "... is out of range",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON body: nested too deeply"),
    ],
)
async def test_malformed_json_in_our_words(gateway_url: str, raw: bytes, message: str) -> None:
    """RFC 8259 §6: NaN and Infinity are not JSON (Python's decoder takes them)."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(
            "/v1/echo", content=raw, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == bad_request(message, "INVALID_BODY", "body")
