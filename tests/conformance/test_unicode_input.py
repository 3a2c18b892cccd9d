"""Text a client sends that is not Unicode is a 400 naming where it is, never a 500.

Fault: a JSON `\\ud800` escape decodes to a lone surrogate, which no protobuf
string (and no UTF-8) can carry. An unknown member name, a map key or a Struct
value holding one reached the error writer, whose quote of it did not encode:
500 "internal gateway error". A Value nested more than json_format's limit said
"expected a JSON value, got an array". Now every member name and string of a body,
at any depth, free JSON and streamed elements included, is checked first and refused
naming its path; every error text the gateway writes encodes whatever it quotes
(lone surrogates as `\\uXXXX`); free JSON says how deep it may nest (30 levels:
upb takes 100 nested messages, an object is three of them).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conformance.test_body_query_agreement import bad_request

JSON = {"Content-Type": "application/json"}
SURROGATE = "is not valid Unicode (a lone surrogate escape)"


async def _post(url: str, path: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post(path, content=body, headers=JSON)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (rb'{"id":"\ud800"}', "id", f"value {SURROGATE}"),
        (rb'{"\ud800":1}', "\\ud800", f"member name {SURROGATE}"),
        (rb'{"id":"x","na\udc80me":1}', "na\\udc80me", f"member name {SURROGATE}"),
        (rb'{"inner":{"child":{"\udfff":1}}}', "inner.child.\\udfff", f"member name {SURROGATE}"),
        (rb'{"inner":{"label":"a\ud800b"}}', "inner.label", f"value {SURROGATE}"),
        (rb'{"tags":["ok","\ud800"]}', "tags[1]", f"value {SURROGATE}"),
        (rb'{"labels":{"\ud800":"x"}}', "labels[\\ud800]", f"map key {SURROGATE}"),
        (rb'{"labels":{"a":"\ud800"}}', "labels[a]", f"value {SURROGATE}"),
        (rb'{"inners":[{},{"\ud800":1}]}', "inners[1].\\ud800", f"member name {SURROGATE}"),
        (rb'{"flag":"\ud800"}', "flag", f"value {SURROGATE}"),
        (rb'{"maybeName":"\ud800"}', "maybeName", f"value {SURROGATE}"),
        (rb'{"anyValue":{"k":"\ud800"}}', "anyValue.k", f"value {SURROGATE}"),
        (rb'{"anyValue":[1,{"a":["\ud800"]}]}', "anyValue[1].a[0]", f"value {SURROGATE}"),
        (rb'{"attrs":{"\ud800":1}}', "attrs.\\ud800", f"member name {SURROGATE}"),
        (rb'{"attrs":{"k":{"\udc00":null}}}', "attrs.k.\\udc00", f"member name {SURROGATE}"),
        (rb'{"listValue":["\ud800"]}', "listValue[0]", f"value {SURROGATE}"),
    ],
)
async def test_a_lone_surrogate_is_refused_naming_its_path(
    gateway_url: str, body: bytes, field: str, reason: str
) -> None:
    response = await _post(gateway_url, "/v1/echo", body)
    assert response.status_code == 400
    message = f'invalid body field "{field}": {reason}'
    assert response.json() == bad_request(message, "INVALID_BODY", field)


async def test_a_lone_surrogate_in_a_one_field_body(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.put("/v1/echo/x/inner", content=rb'{"\ud800":1}', headers=JSON)
    assert response.status_code == 400
    message = f'invalid body field "inner.\\ud800": member name {SURROGATE}'
    assert response.json() == bad_request(message, "INVALID_BODY", "inner.\\ud800")


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b'{"text":"a"}\n{"text":"\\ud800"}', "[1].text", f"value {SURROGATE}"),
        (
            b'[{"text":"a"},{"inner":{"\\udc00":1}}]',
            "[1].inner.\\udc00",
            f"member name {SURROGATE}",
        ),
    ],
)
async def test_a_lone_surrogate_in_a_streamed_element(
    gateway_url: str, body: bytes, field: str, reason: str
) -> None:
    response = await _post(gateway_url, "/v1/rooms/r:collect", body)
    assert response.status_code == 400
    message = f'invalid body field "{field}": {reason}'
    assert response.json() == bad_request(message, "INVALID_BODY", field)


@pytest.mark.parametrize(
    ("path", "body", "message", "field"),
    [
        # Quoted in an error whose check is not about Unicode: escaped, still a 400.
        (
            "/v1/echo",
            rb'"\ud800"',
            'request body must be a JSON object, got the string "\\ud800"',
            "body",
        ),
        (
            "/v1/echo",
            rb'"a\u2028b\u0085"',
            'request body must be a JSON object, got the string "a\\u2028b\\u0085"',
            "body",
        ),
        (
            "/v1/echo",
            rb'{"flag":"x\u2028"}',
            'invalid body field "flag": expected true or false, got the string "x\\u2028"',
            "flag",
        ),
        (
            "/v1/rooms/r:collect",
            rb'["\ud800"]',
            'invalid body field "[0]": expected a JSON object (ChatMessage), '
            'got the string "\\ud800"',
            "[0]",
        ),
    ],
)
async def test_every_error_text_encodes_what_it_quotes(
    gateway_url: str, path: str, body: bytes, message: str, field: str
) -> None:
    response = await _post(gateway_url, path, body)
    assert response.status_code == 400
    assert response.json() == bad_request(message, "INVALID_BODY", field)


def _nested(name: str, opener: bytes, closer: bytes, levels: int) -> bytes:
    inner = b"1" if opener == b'{"a":' else b"true"
    return b'{"%s":' % name.encode() + opener * levels + inner + closer * levels + b"}"


@pytest.mark.parametrize(
    ("name", "opener", "closer"),
    [
        ("anyValue", b"[", b"]"),
        ("anyValue", b'{"a":', b"}"),
        ("attrs", b'{"a":', b"}"),
        ("listValue", b"[", b"]"),
    ],
)
async def test_free_json_nests_at_most_thirty_levels(
    gateway_url: str, name: str, opener: bytes, closer: bytes
) -> None:
    """Objects 33 deep once failed upstream (upb: 100 nested messages) as a 500."""
    most = await _post(gateway_url, "/v1/echo", _nested(name, opener, closer, 30))
    assert most.status_code == 200
    assert most.json()[name] == json.loads(_nested(name, opener, closer, 30))[name]
    deeper = await _post(gateway_url, "/v1/echo", _nested(name, opener, closer, 31))
    assert deeper.status_code == 400
    message = (
        f'invalid body field "{name}": nested too deeply: at most 30 levels of arrays and objects'
    )
    assert deeper.json() == bad_request(message, "INVALID_BODY", name)


# --- query strings and form bodies decode strictly, as paths and JSON bodies do ----

UNDECODABLE = "percent-escapes do not decode to UTF-8"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("tags=%FF", "tags"),  # was read as U+FFFD and echoed
        ("name=%ED%A0%80", "name"),  # a UTF-16 surrogate encoded as UTF-8
        ("id=x&inner.label=a%C3", "inner.label"),  # a truncated sequence
        ("%FF=1", "%FF"),  # the name, as written
        ("bogus=%C0%AF", "bogus"),  # an overlong '/', before "unknown field"
    ],
)
async def test_query_escapes_must_decode_to_utf8(gateway_url: str, query: str, param: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(f"/v1/echo/x?{query}")
    assert response.status_code == 400
    message = f'invalid parameter "{param}": {UNDECODABLE}'
    assert response.json() == bad_request(message, "INVALID_QUERY_PARAMETER", param)


async def test_query_utf8_still_decodes(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get("/v1/echo/x?tags=%C3%A9&tags=a+b&name=%F0%9F%98%80")
    assert response.status_code == 200
    assert (response.json()["tags"], response.json()["name"]) == (["é", "a b"], "😀")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"name=%ED%A0%80", "name"),  # was stored as three U+FFFD
        (b"id=x&tags=%FF", "tags"),
        (b"%FF=1", "%FF"),
    ],
)
async def test_form_escapes_must_decode_to_utf8(gateway_url: str, body: bytes, param: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(
            "/v1/echo", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    assert response.status_code == 400
    message = f'invalid parameter "{param}": {UNDECODABLE}'
    assert response.json() == bad_request(message, "INVALID_FORM_FIELD", param)
