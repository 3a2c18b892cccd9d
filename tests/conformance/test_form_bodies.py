"""A malformed form body is a 400 in the gateway's words, with a reason code.

Fault (issue 8, item 10's neighbour): a blank or garbled
application/x-www-form-urlencoded body answered Python's own wording ("malformed
form body: bad query field: '  '", "'utf-8' codec can't decode byte 0xff in
position 6: invalid start byte") and no ErrorInfo reason. Now it says which field
is wrong and how a form is written (name=value pairs joined by '&', WHATWG URL
§5.1), reason INVALID_BODY like a malformed JSON body. Neighbours: a blank body, an
empty field between, before or after the others, a field without '=', a long one
(cut), bytes that are not UTF-8; and a well-formed form still served.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HOW = "send name=value pairs joined by '&'"


def bad_form(reason: str) -> dict[str, Any]:
    message = f"malformed form body: {reason}"
    return {
        "error": message,
        "code": "INVALID_ARGUMENT",
        "details": [
            {"@type": ERROR_INFO, "reason": "INVALID_BODY", "domain": "gateway"},
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": "body", "description": message}]},
        ],
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"  ", f"field 1 (\"  \") has no '='; {HOW}"),
        (b"\r\n", f"field 1 (\"\\r\\n\") has no '='; {HOW}"),
        (b"name=a&&id=b", f"field 2 is empty; {HOW}"),
        (b"&name=a", f"field 1 is empty; {HOW}"),
        (b"name=a&", f"field 2 is empty; {HOW}"),
        (b"name=a&flag", f"field 2 (\"flag\") has no '='; {HOW}"),
        (b"x" * 100, f'field 1 ("{"x" * 40}"...) has no \'=\'; {HOW}'),
        (b"name=\xff", "not UTF-8"),
    ],
    ids=["blank", "blank-crlf", "empty-between", "empty-first", "empty-last", "no-equals",
         "long-cut", "not-utf8"],
)  # fmt: skip
async def test_malformed_form_bodies_are_400(gateway_url: str, body: bytes, reason: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/echo", content=body, headers=FORM)
    assert response.status_code == 400
    assert response.json() == bad_form(reason)


async def test_a_well_formed_form_is_served(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/echo", content=b"name=a%20b&id=&i32=3", headers=FORM)
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["id"], response.json()["i32"]) == (
        "a b",
        "",
        3,
    )


async def test_a_repeated_field_given_once_empty_is_one_empty_item(gateway_url: str) -> None:
    """A form body's schema is the JSON body's: `tags=` is `"tags": [""]` there (one empty
    item, whose checks apply), not an absent list as `?tags=` is in a query string."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/echo", content=b"name=a&tags=", headers=FORM)
        query = await client.get("/v1/echo/a?tags=")
    assert response.status_code == 200
    assert response.json()["tags"] == [""]
    assert query.status_code == 200
    assert query.json()["tags"] == []
