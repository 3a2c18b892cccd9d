"""Error texts name the field in product words, never the runtime's (issue 8, item 5).

Fault: after item 5 moved bodies onto the query's converters, three kinds of text
still spoke the runtime's language: Python json's syntax errors ("malformed JSON
body: Expecting value: line 1 column 1 (char 0)"), package-qualified message names
('no field "x" in orchestrator.jobengine.v1.ListSourcesRequest', "is not a
gwtest.v1.Color name or number"), and proto's vocabulary for shapes ("given more than
once, but google.protobuf.Timestamp is not repeated"). Now a syntax error says what
was expected and where (line and column, as an editor counts them), an unknown field
is named by its path, and types go by their schema names (`Color`, `Inner`) or by
what their JSON is (`timestamp`, `array of string`).

The exact texts are checked through both gateways; then a sweep sends every field of
gwtest.v1.Kitchen each wrong JSON type, twice in the query and with sub-fields,
every kind of malformed document as a body and as a request stream, and 3,000
random requests of the fuzz vocabulary, and checks every error text against the
wording check the schemathesis run applies (tests/integration/schemathesis_hooks.py
runtime_words), so the run and this sweep catch the same regressions.
"""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conformance.conftest import echo_gateway
from tests.conformance.test_body_query_agreement import bad_request
from tests.conformance.test_fuzz import requests
from tests.integration.schemathesis_hooks import error_texts, runtime_words
from tests.support import protos

JSON = {"Content-Type": "application/json"}
Kitchen = protos.echo_pb2().Kitchen


# --- the three texts the issue names, and their neighbours, exactly -----------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x0b", "expected a value at line 1, column 1"),
        (b'{"id": "x",}', "expected a member name in double quotes at line 1, column 12"),
        (b'{"id" "x"}', "expected ':' after a member name at line 1, column 7"),
        (b'{"id": "x"', "expected ',' or a closing bracket at line 1, column 11"),
        (b'{\n  "id": tru\n}', "expected a value at line 2, column 9"),
        (b'{"id": "x', "unterminated string starting at line 1, column 8"),
        (b'{"id": "a\tb"}', "unescaped control character in a string at line 1, column 10"),
        (b'{"id": "\\q"}', "invalid escape in a string at line 1, column 9"),
        (b'{"id": "\\u12"}', "invalid \\u escape in a string at line 1, column 10"),
        (b'{"id": "x"} {}', "more data after the JSON value at line 1, column 13"),
        ('{"id": "x"}'.encode("utf-16"), "not UTF-8"),  # RFC 8259 §8.1
        # RFC 8259 §4: which of two same-named members counts is unknowable (protojson
        # refuses them too); once the last one silently won.
        (b'{"id": "x", "id": "y"}', 'member name "id" appears twice in one object'),
        (b'{"inner": {"count": 1, "count": 2}}', 'member name "count" appears twice in one object'),
    ],
)
async def test_json_syntax_errors_in_our_words(gateway_url: str, body: bytes, reason: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/echo", content=body, headers=JSON)
    assert response.status_code == 400
    message = f"malformed JSON body: {reason}"
    assert response.json() == bad_request(message, "INVALID_BODY", "body")


async def test_a_byte_order_mark_is_ignored(gateway_url: str) -> None:
    """RFC 8259 §8.1 lets a parser ignore a leading BOM; unary and streamed bodies alike."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        unary = await client.post("/v1/echo", content=b'\xef\xbb\xbf{"id":"x"}', headers=JSON)
        stream = await client.post(
            "/v1/rooms/r:collect", content=b'\xef\xbb\xbf{"text":"a"}\n{}', headers=JSON
        )
    assert (unary.status_code, unary.json()["id"]) == (200, "x")
    assert stream.status_code == 200
    assert [m["text"] for m in stream.json()["messages"]] == ["a", ""]


async def test_stream_syntax_errors_in_our_words(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(
            "/v1/rooms/r:collect", content=b'{"text":"a"}\n{"text" 1}', headers=JSON
        )
    message = "malformed JSON body: expected ':' after a member name at line 2, column 9"
    assert (response.status_code, response.json()) == (
        400,
        bad_request(message, "INVALID_BODY", "body"),
    )


@pytest.mark.parametrize(
    ("query", "param", "reason"),
    [
        ("bogus=1", "bogus", "unknown field"),
        ("inner.bogus=1", "inner.bogus", "unknown field"),
        ("inner.child.bogus=1", "inner.child.bogus", "unknown field"),
        ("bogus.label=1", "bogus.label", 'unknown field "bogus"'),
        ("inner..label=1", "inner..label", "empty field name"),
        (
            "at=2026-11-22T10:00:00Z&at=2026-11-22T11:00:00Z",
            "at",
            "given more than once, but the field takes a single timestamp",
        ),
        ("color=1&color=2", "color", "given more than once, but the field takes a single Color"),
        ("maybe_count=1&maybe_count=2", "maybe_count",
         "given more than once, but the field takes a single int64"),
        ("color=9", "color", '"9" is not a Color name or number; '
         "expected one of COLOR_UNSPECIFIED, COLOR_RED, COLOR_GREEN or its number"),
        ("maybe_count=ten", "maybe_count", '"ten" is not a decimal int64'),
        ("inner=x", "inner", "Inner is an object, not a single value; name its fields"),
        ("at.seconds=1", "at.seconds", 'cannot set sub-fields of "at" (timestamp)'),
        ("counters.k=1", "counters.k",
         'cannot set sub-fields of "counters" (map of string to int32)'),
        ("inners.label=x", "inners.label", 'cannot set sub-fields of "inners" (array of Inner)'),
        ("tags[0]=x", "tags[0]", '"tags" (array of string) is not a map'),
    ],
)  # fmt: skip
async def test_query_errors_name_the_field_in_product_words(
    gateway_url: str, query: str, param: str, reason: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(f"/v1/echo/x?{query}")
    assert response.status_code == 400
    message = f'invalid parameter "{param}": {reason}'
    assert response.json() == bad_request(message, "INVALID_QUERY_PARAMETER", param)


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ({"bogus": 1}, "bogus", "unknown field"),
        ({"inner": {"child": {"bogus": 1}}}, "inner.child.bogus", "unknown field"),
        ({"inners": [{}, {"bogus": 1}]}, "inners[1].bogus", "unknown field"),
        ({"at": ["2026-11-22T10:00:00Z"]}, "at",
         "expected an RFC 3339 timestamp such as 2026-11-22T10:00:00Z, got an array"),
        ({"inner": 5}, "inner", "expected a JSON object (Inner), got the number 5"),
        ({"inners": {}}, "inners", "expected a JSON array of Inner, got an object"),
        ({"colors": "COLOR_RED"}, "colors",
         'expected a JSON array of Color, got the string "COLOR_RED"'),
        ({"counters": [1]}, "counters",
         "expected a JSON object (map of string to int32), got an array"),
        ({"maybeCount": True}, "maybeCount", "expected a decimal int64, got true"),
        ({"color": 9}, "color", "9 is not a Color name or number; "
         "expected one of COLOR_UNSPECIFIED, COLOR_RED, COLOR_GREEN or its number"),
    ],
)  # fmt: skip
async def test_body_errors_name_the_field_in_product_words(
    gateway_url: str, document: dict[str, Any], field: str, reason: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/echo", content=json.dumps(document), headers=JSON)
    assert response.status_code == 400
    message = f'invalid body field "{field}": {reason}'
    assert response.json() == bad_request(message, "INVALID_BODY", field)


async def test_a_lone_stream_value_names_the_message_by_its_schema_name(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/rooms/r:collect", content=b"5", headers=JSON)
    message = (
        "a streamed request body is a JSON array of ChatMessage objects, or one object per "
        "line; got the number 5"
    )
    assert (response.status_code, response.json()) == (
        400,
        bad_request(message, "INVALID_BODY", "body"),
    )


# --- the sweep: no error text in the runtime's words ------------------------------------

WRONG_VALUES: tuple[Any, ...] = (
    5, -1, 1.5, 2**70, 1e300, True, "x", "", [1], [None], ["x", {}], {"a": 1}, {"k": None},
    {"@type": "type.googleapis.com/nope.v1.Nope"}, None,
)  # fmt: skip
MALFORMED = (
    b"\x0b", b"{", b"}", b"[", b"[1,]", b'{"a":1,}', b'{"a" 1}', b'{"a":1 "b":2}', b"[1 2]",
    b'"abc', b'"a\x01"', b'"\\x"', b'"\\u12"', b"tru", b"nul", b"01", b"1.", b"-", b".5",
    b"NaN", b"-Infinity", b"1e400", b"[" * 5000, b"{} {}", b"{}x", b"\xff", b"\xed\xa0\x80",
    b"\xef\xbb\xbf", '{"id": "x"}'.encode("utf-16"), '{"id": "x"}'.encode("utf-32"),
    b"'single'", b"{a: 1}", b"/* c */ {}", b"\x00",
)  # fmt: skip
QUERY_VALUES = ("x", "1", "-1", "1.5", "99999999999999999999", "", "[1]", '{"a":1}', "%FF")


def _corpus() -> list[tuple[str, str, bytes]]:
    """(method, url, body) for every field of Kitchen and every malformed document."""
    cases: list[tuple[str, str, bytes]] = []
    for field in Kitchen.DESCRIPTOR.fields:
        for name in {field.name, field.json_name}:
            for value in WRONG_VALUES:
                cases.append(("POST", "/v1/echo", json.dumps({name: value}).encode()))
                cases.append(("POST", "/v1/echo", json.dumps({"inner": {name: value}}).encode()))
            for value in QUERY_VALUES:
                once = f"{name}={quote(value, safe='%')}"
                cases.append(("GET", f"/v1/echo/x?{once}", b""))
                cases.append(("GET", f"/v1/echo/x?{once}&{once}", b""))
                cases.append(("GET", f"/v1/echo/x?{name}.sub={value}", b""))
                cases.append(("GET", f"/v1/echo/x?{name}[k]={value}", b""))
                cases.append(("GET", f"/v1/echo/x?inner.{name}={value}", b""))
    for document in MALFORMED:
        cases.append(("POST", "/v1/echo", document))
        cases.append(("PUT", "/v1/echo/x/inner", document))
        cases.append(("POST", "/v1/rooms/r:collect", document))
        cases.append(("POST", "/v1/rooms/r:collect", b'{"text":"a"}\n' + document))
        cases.append(("POST", "/v1/rooms/r:chat", document))
    return cases


def _texts(response: httpx.Response) -> list[str]:
    """Error texts of a JSON error body, or of each `{"error"}` line of a stream."""
    try:
        return error_texts(response.json())
    except ValueError:
        texts: list[str] = []
        for line in response.text.splitlines():
            try:
                value = json.loads(line.removeprefix("data:"))
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("error"), dict):
                texts.extend(error_texts(value["error"]))
        return texts


async def test_no_error_text_uses_the_runtime_words() -> None:
    gateway = echo_gateway()
    transport = httpx.ASGITransport(app=gateway)
    corpus = _corpus()
    fuzzed = requests(random.Random(8), gateway.bindings)
    for _ in range(3000):
        method, url, body, _headers = next(fuzzed)
        corpus.append((method, url, body))
    found: list[str] = []
    refusals = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        for method, url, body in corpus:
            try:
                response = await client.request(method, url, content=body, headers=JSON)
            except httpx.InvalidURL:
                continue
            texts = _texts(response) if response.status_code >= 400 else []
            refusals += bool(texts)
            found.extend(
                f"{method} {url} {body[:60]!r} -> {text}"
                for text in texts
                if runtime_words(text) is not None
            )
    assert found == []
    assert refusals > 3000  # the corpus reaches the refusals it is meant to check


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("Content-Type", ("application/json", "text/plain")),
        ("X-Server-Timeout", ("5", "10")),
        ("grpc-timeout", ("5S", "1m")),
    ],
)
async def test_a_one_value_header_sent_twice_differently_is_400(
    gateway_url: str, name: str, values: tuple[str, str]
) -> None:
    """RFC 9110 §5.3: these are not list-based; two different values leave the meant
    one unknowable (the first used to win). The same value twice is harmless."""
    body = b'{"id": "x"}'
    twice = httpx.Headers([(name, value) for value in values] + [("Accept", "*/*")])
    same = httpx.Headers([(name, values[0]), (name, values[0])])
    if name != "Content-Type":
        twice["Content-Type"] = same["Content-Type"] = "application/json"
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        refused = await client.post("/v1/echo", content=body, headers=twice)
        accepted = await client.post("/v1/echo", content=body, headers=same)
    message = f"malformed {name} header: sent twice with different values"
    assert refused.status_code == 400, refused.text
    assert refused.json() == bad_request(message, "BAD_HEADER", name)
    assert (accepted.status_code, accepted.json()["id"]) == (200, "x")
