"""Blank is not empty: a body of only whitespace is malformed JSON, no body is none.

Fault (issue 8, item 10): `POST /v1/echo` with a body of `"  "` or `"\\r \\t\\n"` was
served as an empty message (200), because the body was stripped before it was
decoded. RFC 8259 §2 allows whitespace around a JSON value, not instead of one; an
absent body (zero bytes) still means an empty request message, as grpc-gateway
does. Neighbours: every binding that takes a body (the whole request, one field, a
PATCH, a custom verb), Python's wider idea of whitespace (`\\x0b`, `\\x0c` are not
JSON whitespace), and the bodies that are not JSON (HttpBody, form) or not read.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
BLANK = "malformed JSON body: only whitespace; send a JSON value or no body"
JSON = {"Content-Type": "application/json"}


def bad_body(message: str) -> dict[str, Any]:
    return {
        "error": message,
        "code": "INVALID_ARGUMENT",
        "details": [
            {"@type": ERROR_INFO, "reason": "INVALID_BODY", "domain": "gateway"},
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": "body", "description": message}]},
        ],
    }


async def _send(url: str, method: str, path: str, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.request(method, path, content=body, headers=headers)


@pytest.mark.parametrize("body", [b"  ", b"\r \t\n", b"\n", b"\t", b" " * 1000])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/echo"),  # body: "*"
        ("PUT", "/v1/echo/x/inner"),  # body: "inner"
        ("PATCH", "/v1/kitchens/k"),  # body: "kitchen", update_mask from the body's keys
        ("POST", "/v1/echo/x:shout"),  # a custom verb, body: "*"
    ],
)
async def test_whitespace_only_is_malformed_json(
    gateway_url: str, method: str, path: str, body: bytes
) -> None:
    for headers in (JSON, {}):  # with and without a Content-Type
        response = await _send(gateway_url, method, path, body, **headers)
        assert response.status_code == 400
        assert response.json() == bad_body(BLANK)


@pytest.mark.parametrize("body", [b"\x0b", b"\x0c", b"\xc2\xa0"])
async def test_what_python_calls_whitespace_is_not_json(gateway_url: str, body: bytes) -> None:
    """Vertical tab, form feed and no-break space are not JSON whitespace (RFC 8259 §2)."""
    response = await _send(gateway_url, "POST", "/v1/echo", body, **JSON)
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON body: ")


async def test_absent_body_is_an_empty_message(gateway_url: str) -> None:
    response = await _send(gateway_url, "POST", "/v1/echo", b"", **JSON)
    assert response.status_code == 200
    assert response.json()["id"] == ""
    response = await _send(gateway_url, "PUT", "/v1/echo/x/inner", b"")
    assert (response.status_code, response.json()["id"], "inner" in response.json()) == (
        200,
        "x",
        False,
    )


async def test_whitespace_around_a_value_is_fine(gateway_url: str) -> None:
    response = await _send(gateway_url, "POST", "/v1/echo", b' \r\n\t{"id": "a"} \n', **JSON)
    assert (response.status_code, response.json()["id"]) == (200, "a")


async def test_blank_http_body_is_data(gateway_url: str) -> None:
    """google.api.HttpBody takes the bytes as they are: two spaces are two bytes."""
    response = await _send(
        gateway_url, "POST", "/v1/upload", b"  ", **{"Content-Type": "text/plain"}
    )
    assert (response.status_code, response.content) == (200, b"text/plain|  ")


async def test_blank_body_on_a_bodiless_binding_is_not_read(gateway_url: str) -> None:
    response = await _send(gateway_url, "GET", "/v1/kitchens/k", b"  ", **JSON)
    assert (response.status_code, response.json()["id"]) == (200, "k")
