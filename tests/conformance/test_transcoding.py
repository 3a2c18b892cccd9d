"""Transcoding conformance: HTTP request -> gRPC request -> HTTP response, for an API
that has nothing to do with the product (tests/protos/gwtest/v1/echo.proto).

Written from google/api/http.proto and the documented behaviour of grpc-gateway
(runtime/errors.go HTTPStatusFromCode, query.go, handler.go) and Envoy's transcoder.
Every case runs in-process and through the proxy; ids listed in
expected_failures.txt (`transcode/...`) are strict xfails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format

from tests.conformance.conftest import ndjson
from tests.support import protos

pb = protos.echo_pb2()
EXPECTED_FAILURES_FILE = Path(__file__).with_name("expected_failures.txt")


def _expected_failures() -> dict[str, str]:
    listed: dict[str, str] = {}
    for line in EXPECTED_FAILURES_FILE.read_text().splitlines():
        text = line.strip()
        if text.startswith("transcode/"):
            case_id, _, reason = text.partition("#")
            listed[case_id.strip()] = reason.strip()
    return listed


def kitchen(**fields: Any) -> dict[str, Any]:
    """The full JSON of a Kitchen (every field without presence printed), as the
    gateway must answer it when the echo server returns this message."""
    message = json_format.ParseDict(fields, pb.Kitchen())
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    body: Any = None  # JSON document to send
    raw: bytes | None = None  # or raw bytes
    headers: dict[str, str] = field(default_factory=dict)
    expect: Any = None  # exact JSON answer
    expect_text: bytes | None = None
    expect_headers: dict[str, str] = field(default_factory=dict)
    error_field: str | None = None  # a BadRequest violation must name it
    source: str = "http.proto"


CASES = [
    # Body mapping
    Case("transcode/body-star", "POST", "/v1/echo", 200,
         body={"id": "a", "i32": 5, "i64": "9007199254740993", "color": "COLOR_RED",
               "tags": ["x", "y"], "labels": {"k": "v"}, "at": "2026-11-22T10:00:00Z",
               "ttl": "1.5s", "customName": "c", "updateMask": "name,inner.label",
               "maybeName": "w", "attrs": {"a": [1, "b", None]}, "data": "AAE="},
         expect=kitchen(id="a", i32=5, i64="9007199254740993", color="COLOR_RED", tags=["x", "y"],
                        labels={"k": "v"}, at="2026-11-22T10:00:00Z", ttl="1.5s", customName="c",
                        updateMask="name,inner.label", maybeName="w", attrs={"a": [1, "b", None]},
                        data="AAE=")),
    Case("transcode/body-int64-as-number", "POST", "/v1/echo", 200, body={"i64": 12, "u64": 7},
         expect=kitchen(i64="12", u64="7"), source="proto3 JSON mapping"),
    Case("transcode/body-enum-by-number", "POST", "/v1/echo", 200, body={"color": 2},
         expect=kitchen(color="COLOR_GREEN"), source="proto3 JSON mapping"),
    Case("transcode/body-proto-field-name", "POST", "/v1/echo", 200, body={"custom_json": "p"},
         expect=kitchen(customName="p"), source="proto3 JSON mapping"),
    Case("transcode/body-empty-is-empty-message", "POST", "/v1/echo", 200, raw=b"",
         expect=kitchen(), source="grpc-gateway"),
    Case("transcode/body-on-bodiless-binding-ignored", "GET", "/v1/kitchens/k1", 200,
         body={"id": "zzz", "name": "body"}, expect=kitchen(id="k1", name="kitchen k1"),
         source="http.proto: no body mapping, nothing is taken from the body"),
    Case("transcode/body-named-field", "PUT", "/v1/echo/abc/inner?name=q", 200,
         body={"label": "L", "count": 3},
         expect=kitchen(id="abc", name="q", inner={"label": "L", "count": 3})),
    Case("transcode/path-wins-over-body", "POST", "/v1/echo/abc:shout", 200,
         body={"id": "zzz", "name": "n"}, expect=kitchen(id="abc", name="n"), source="grpc-gateway"),
    # Query parameters
    Case("transcode/query-everything", "GET",
         "/v1/echo/abc?i32=7&tags=a&tags=b&labels[x]=1&inner.label=L&color=COLOR_GREEN"
         "&at=2026-11-22T10:00:00Z&ttl=2s&updateMask=name,inner.label&maybeName=w&flag=true"
         "&customName=cj&inner.child.count=4&numbers=1&numbers=2&colors=1&colors=COLOR_GREEN", 200,
         expect=kitchen(id="abc", i32=7, tags=["a", "b"], labels={"x": "1"},
                        inner={"label": "L", "child": {"count": 4}}, color="COLOR_GREEN",
                        at="2026-11-22T10:00:00Z", ttl="2s", updateMask="name,inner.label",
                        maybeName="w", flag=True, customName="cj", numbers=[1, 2],
                        colors=["COLOR_RED", "COLOR_GREEN"]), source="grpc-gateway query.go"),
    Case("transcode/query-proto-names", "GET", "/v1/echo/abc?custom_json=p&maybe_name=m&update_mask=a", 200,
         expect=kitchen(id="abc", customName="p", maybeName="m", updateMask="a"), source="grpc-gateway"),
    Case("transcode/query-bytes-base64url", "GET", "/v1/echo/abc?data=AAE_-w", 200,
         expect=kitchen(id="abc", data="AAE/+w=="), source="grpc-gateway"),
    Case("transcode/query-unknown-is-400", "GET", "/v1/echo/abc?nope=1", 400, error_field="nope", source="ours"),
    Case("transcode/query-bad-enum-is-400", "GET", "/v1/echo/abc?color=COLOR_PURPLE", 400, error_field="color"),
    Case("transcode/query-int-overflow-is-400", "GET", "/v1/echo/abc?i32=2147483648", 400, error_field="i32"),
    Case("transcode/query-bad-timestamp-is-400", "GET", "/v1/echo/abc?at=yesterday", 400, error_field="at"),
    Case("transcode/query-mask-not-a-path-400", "GET", "/v1/echo/abc?updateMask=COLOR_RED", 400, error_field="updateMask", source="fuzz: unprintable mask"),
    Case("transcode/body-number-out-of-range-400", "POST", "/v1/echo", 400, raw=b'{"dbl": 1e400}', error_field="body", source="fuzz: RFC 8259 §6"),
    Case("transcode/query-value-overflow-is-string", "GET", "/v1/echo/abc?anyValue=1e400", 200, expect=kitchen(id="abc", anyValue="1e400"), source="fuzz"),
    Case("transcode/query-on-body-star-is-400", "POST", "/v1/echo?name=x", 400, body={}, error_field="name",
         source="http.proto: body * leaves no query parameters"),
    # Path templates and routing
    Case("transcode/literal-beats-variable", "GET", "/v1/kitchens/me", 200,
         expect=kitchen(id="me", name="my kitchen"), source="grpc-gateway"),
    Case("transcode/variable", "GET", "/v1/kitchens/k1", 200, expect=kitchen(id="k1", name="kitchen k1")),
    Case("transcode/single-segment-fully-decoded", "GET", "/v1/kitchens/a%2Fb%20c", 200,
         expect=kitchen(id="a/b c", name="kitchen a/b c")),
    Case("transcode/colon-in-id-without-verb", "GET", "/v1/echo/user:123", 200,
         expect=kitchen(id="user:123"), source="grpc-gateway"),
    Case("transcode/verb-after-colon-id", "POST", "/v1/echo/user:123:shout", 200, body={},
         expect=kitchen(id="user:123")),
    Case("transcode/custom-method-deep-wildcard", "SEARCH", "/v1/echo/rooms/r1/items/a/b%2Fc%20d", 200,
         expect=kitchen(name="rooms/r1/items/a/b%2Fc d"), source="http.proto multi-segment decoding"),
    Case("transcode/nested-pattern", "GET", "/v1/shelves/s1/kitchens?pageSize=1&pageToken=t", 200,
         expect={"kitchens": [kitchen(id="shelves/s1/k0")], "nextPageToken": "t+"}),
    Case("transcode/no-route-404", "GET", "/v1/nothing", 404, source="grpc-gateway"),
    Case("transcode/wrong-method-405", "DELETE", "/v1/echo", 405, expect_headers={"allow": "POST"}),
    Case("transcode/bad-escape-400", "GET", "/v1/kitchens/%zz", 400, source="ours"),
    # Responses
    Case("transcode/response-body-repeated-is-array", "GET", "/v1/echo/abc/tags?tags=a&tags=b", 200,
         expect=["a", "b"], source="http.proto response_body"),
    Case("transcode/response-body-empty-array", "GET", "/v1/echo/abc/tags", 200, expect=[]),
    Case("transcode/patch-fills-update-mask", "PATCH", "/v1/kitchens/k9", 200,
         body={"name": "n", "inner": {"label": "l"}, "tags": ["t"]},
         expect=kitchen(id="k9", name="n", inner={"label": "l"}, tags=["t"],
                        updateMask="name,inner.label,tags"), source="grpc-gateway fieldmask.go"),
    Case("transcode/patch-explicit-mask-kept", "PATCH", "/v1/kitchens/k9?updateMask=name", 200,
         body={"name": "n", "flag": True},
         expect=kitchen(id="k9", name="n", flag=True, updateMask="name")),
    Case("transcode/delete-empty", "DELETE", "/v1/kitchens/k1", 200, expect={}),
    Case("transcode/httpbody-response", "GET", "/v1/files/docs/a%20b.txt", 200,
         expect_text=b"docs/a b.txt", expect_headers={"content-type": "text/plain; charset=utf-8"}),
    Case("transcode/httpbody-request", "POST", "/v1/upload", 200, raw=b"\x00\x01raw",
         headers={"Content-Type": "application/octet-stream"},
         expect_text=b"application/octet-stream|\x00\x01raw",
         expect_headers={"content-type": "application/x-echo"}),
    # Bad bodies
    Case("transcode/malformed-json-400", "POST", "/v1/echo", 400, raw=b'{"id": ', error_field="body"),
    Case("transcode/wrong-type-400", "POST", "/v1/echo", 400, body={"i32": "abc"}, error_field="i32"),
    Case("transcode/unknown-json-field-400", "POST", "/v1/echo", 400, body={"bogus": 1}, error_field="bogus"),
    Case("transcode/unsupported-media-415", "POST", "/v1/echo", 415, raw=b"<a/>",
         headers={"Content-Type": "text/xml"}),
    Case("transcode/bad-grpc-timeout-400", "GET", "/v1/kitchens/k1", 400,
         headers={"grpc-timeout": "soon"}, error_field="grpc-timeout"),
]  # fmt: skip

# grpc-gateway runtime/errors.go HTTPStatusFromCode.
ERROR_STATUSES = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
EXPECTED = _expected_failures()


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(reason=EXPECTED[case.id], strict=True)]
            if case.id in EXPECTED
            else [],
        )
        for case in cases
    ]


@pytest.mark.parametrize("case", _params(CASES))
async def test_case(gateway_url: str, case: Case) -> None:
    content = case.raw if case.raw is not None else None
    headers = dict(case.headers)
    if case.body is not None:
        content = json.dumps(case.body).encode()
        headers.setdefault("Content-Type", "application/json")
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.request(case.method, case.path, content=content, headers=headers)
    assert response.status_code == case.status, response.text
    for name, value in case.expect_headers.items():
        assert response.headers[name] == value
    if case.expect_text is not None:
        assert response.content == case.expect_text
    elif case.expect is not None:
        assert response.json() == case.expect
    if case.status >= 400:
        document = response.json()
        assert set(document) == {"error", "code", "details"}
        assert document["error"]
        if case.error_field is not None:
            assert case.error_field in document["error"]
            named = [
                v["field"]
                for d in document["details"]
                if d["@type"].endswith("BadRequest")
                for v in d["fieldViolations"]
            ]
            assert named == [case.error_field]


@pytest.mark.parametrize("code", sorted(ERROR_STATUSES))
async def test_grpc_code_maps_to_http_status(gateway_url: str, code: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(f"/v1/fail/{code}")
    assert response.status_code == ERROR_STATUSES[code]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": f"failed with {code}",
        "code": code,
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ECHO_FAILURE",
                "domain": "gwtest",
            }
        ],
    }


async def test_headers_forwarded_by_allow_list_and_metadata_returned(gateway_url: str) -> None:
    headers = {
        "Authorization": "Bearer t",
        "X-Stella-Tenant": "acme",
        "Grpc-Metadata-Color": "blue",
        "Idempotency-Key": "k1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "Cookie": "session=secret",
        "X-Random": "nope",
    }
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post("/v1/echo", json={}, headers=headers)
    assert response.status_code == 200
    seen = response.headers["grpc-metadata-x-echo-metadata"].split(",")
    forwarded = [
        k for k in seen if not k.startswith(("grpc-", ":", "user-agent", "content-type", "te"))
    ]
    assert forwarded == [
        "authorization",
        "color",
        "idempotency-key",
        "traceparent",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-method",
        "x-forwarded-proto",
        "x-forwarded-uri",
        "x-stella-tenant",
    ]
    assert response.headers["grpc-metadata-x-echo-trailer"] == "done"


async def test_server_stream_as_ndjson(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get("/v1/count?count=3")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert ndjson(response.text) == [{"result": kitchen(id=str(i), i32=i)} for i in range(3)]


async def test_server_stream_as_sse(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get("/v1/count?count=2", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(chunk[len("data: ") :]) for chunk in response.text.split("\n\n") if chunk]
    assert events == [{"result": kitchen(id=str(i), i32=i)} for i in range(2)]


async def test_stream_failing_at_once_is_an_http_error(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get("/v1/count?count=-1")
    assert response.status_code == 400
    assert response.json()["error"] == "count must not be negative"


async def test_stream_deadline_ends_with_an_error_line(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(
            "/v1/count?count=5&delayMs=150", headers={"grpc-timeout": "400m"}
        )
    assert response.status_code == 200
    lines = ndjson(response.text)
    assert 1 <= len(lines) < 5
    *results, last = lines
    assert isinstance(last, dict)
    assert last["error"]["code"] == "DEADLINE_EXCEEDED"
    assert results == [{"result": kitchen(id=str(i), i32=i)} for i in range(len(results))]


async def test_body_over_limit_is_413(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(
            "/v1/echo",
            content=b'{"name": "' + b"x" * (4 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["code"] == "RESOURCE_EXHAUSTED"
