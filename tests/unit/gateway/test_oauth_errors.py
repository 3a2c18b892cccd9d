"""RFC 6749 §5.2 error bodies on `error_format: ERROR_FORMAT_OAUTH` methods, also for
errors the gateway raises itself before any upstream call.

The gateway serves the real OAuthService descriptors in front of a recording
upstream, so these tests see exactly what was (or was not) called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.app import Gateway, GatewayConfig
from gateway.bindings import bindings_for
from gateway.upstream import StreamCall, UnaryResult, UpstreamError
from orchestrator.identity.v1 import oauth_pb2, oauth_service_pb2

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NO_STORE = "no-store"


@dataclass
class Recorder:
    """An upstream that records calls and answers `response`, or raises `error`."""

    error: Exception | None = None
    calls: list[tuple[str, Message]] = field(default_factory=list)

    async def unary(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> UnaryResult:
        self.calls.append((method, request))
        if self.error is not None:
            raise self.error
        return UnaryResult(response=response_type())

    async def stream(
        self,
        method: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]],
        timeout: float | None,
    ) -> StreamCall:
        raise AssertionError("OAuthService has no streaming methods")

    async def close(self) -> None:
        return None


@pytest.fixture
def upstream() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(upstream: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    service = oauth_service_pb2.DESCRIPTOR.services_by_name["OAuthService"]
    gateway = Gateway(bindings_for([service]), upstream, GatewayConfig(max_body_bytes=64))
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


def oauth_error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == NO_STORE
    body: dict[str, str] = response.json()
    assert list(body) == ["error", "error_description"]
    return body


GATEWAY_ERRORS = [
    pytest.param(
        "/oauth/token",
        b"grant_type=client_credentials&client_id=a&client_id=b",
        FORM,
        400,
        "invalid parameter 'client_id': given more than once, but the field takes a single string",
        id="repeated-form-field",
    ),
    pytest.param(
        "/oauth/token",
        b"grant_type=x&&scope=y",
        FORM,
        400,
        "malformed form body: field 2 is empty; send name=value pairs joined by '&'",
        id="malformed-form",
    ),
    pytest.param(
        "/oauth/introspect",
        b"token=\xff",
        FORM,
        400,
        "malformed form body: not UTF-8",
        id="form-not-utf8",
    ),
    pytest.param(
        "/oauth/revoke",
        b"<token/>",
        {"Content-Type": "text/xml"},
        415,
        "unsupported content type 'text/xml'; "
        "send application/json or application/x-www-form-urlencoded",
        id="wrong-content-type",
    ),
    pytest.param(
        "/oauth/token",
        b"grant_type=" + b"x" * 64,
        FORM,
        413,
        "request body exceeds 64 bytes",
        id="body-too-large",
    ),
    pytest.param(
        "/oauth/token",
        b'{"grant_type": 5}',
        {"Content-Type": "application/json"},
        400,
        "invalid body field 'grant_type': 5 is not a string",
        id="json-wrong-type",
    ),
    pytest.param(
        "/oauth/token",
        b'{"grant_type": ',
        {"Content-Type": "application/json"},
        400,
        "malformed JSON body: expected a value at line 1, column 16",
        id="json-malformed",
    ),
    pytest.param(
        "/oauth/token",
        b"grant_type=client_credentials",
        {**FORM, "grpc-timeout": "soon"},
        400,
        "grpc-timeout must be 1-8 digits and a unit (H, M, S, m, u, n)",
        id="bad-timeout-header",
    ),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "description"), GATEWAY_ERRORS)
async def test_gateway_raised_errors_are_invalid_request_with_their_status(
    client: httpx.AsyncClient,
    upstream: Recorder,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    description: str,
) -> None:
    response = await client.post(path, content=body, headers=headers)
    assert oauth_error(response, status) == {
        "error": "invalid_request",
        "error_description": description,
    }
    assert upstream.calls == []


async def test_wrong_method_on_the_token_endpoint_is_an_oauth_405(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    response = await client.get("/oauth/token")
    assert oauth_error(response, 405) == {
        "error": "invalid_request",
        "error_description": "method GET not allowed for /oauth/token",
    }
    assert response.headers["allow"] == "POST"
    assert upstream.calls == []


async def test_query_parameters_on_the_token_endpoint_are_ignored(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    """RFC 6749 §3.2: the endpoint URI may carry a query; only the body is the request."""
    response = await client.post(
        "/oauth/token?grant_type=password&client_secret=q&bogus",
        content=b"grant_type=client_credentials&client_id=c&bogus=1",
        headers=FORM,
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == NO_STORE
    assert upstream.calls == [
        (
            "/orchestrator.identity.v1.OAuthService/Token",
            oauth_pb2.TokenRequest(grant_type="client_credentials", client_id="c"),
        )
    ]


def _status(code: int, message: str, reason: str | None = None) -> status_pb2.Status:
    status = status_pb2.Status(code=code, message=message)
    if reason is not None:
        info = error_details_pb2.ErrorInfo(reason=reason, domain="orchestrator")
        status.details.add().Pack(info)
    return status


@pytest.mark.parametrize(
    ("status", "http_status", "error"),
    [
        (_status(code_pb2.UNAUTHENTICATED, "bad secret", "invalid_client"), 401, "invalid_client"),
        (_status(code_pb2.INVALID_ARGUMENT, "no", "invalid_scope"), 400, "invalid_scope"),
        (_status(code_pb2.INVALID_ARGUMENT, "no"), 400, "invalid_request"),
        (_status(code_pb2.UNAUTHENTICATED, "no"), 401, "invalid_client"),
        (_status(code_pb2.UNAVAILABLE, "no"), 503, "temporarily_unavailable"),
        (_status(code_pb2.INTERNAL, "no"), 500, "server_error"),
        (_status(code_pb2.UNKNOWN, "no"), 500, "server_error"),
    ],
)  # fmt: skip
async def test_upstream_errors_keep_the_servers_rfc6749_code(
    client: httpx.AsyncClient,
    upstream: Recorder,
    status: status_pb2.Status,
    http_status: int,
    error: str,
) -> None:
    upstream.error = UpstreamError(status, headers=(("www-authenticate", 'Basic realm="o"'),))
    response = await client.post("/oauth/token", content=b"grant_type=x", headers=FORM)
    assert oauth_error(response, http_status) == {
        "error": error,
        "error_description": status.message,
    }
    assert response.headers["www-authenticate"] == 'Basic realm="o"'


async def test_a_gateway_failure_is_server_error_without_its_details(
    client: httpx.AsyncClient, upstream: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.error = RuntimeError("secret internals")
    response = await client.post("/oauth/token", content=b"grant_type=x", headers=FORM)
    assert oauth_error(response, 500) == {
        "error": "server_error",
        "error_description": "internal gateway error",
    }
    assert "secret internals" in caplog.text  # logged, never answered


async def test_error_description_keeps_to_the_rfc6749_character_set(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    message = 'scope "orch:x\\y" is caf\u00e9\n'
    upstream.error = UpstreamError(_status(code_pb2.INVALID_ARGUMENT, message, "invalid_scope"))
    response = await client.post("/oauth/token", content=b"grant_type=x", headers=FORM)
    assert oauth_error(response, 400) == {
        "error": "invalid_scope",
        "error_description": "scope 'orch:x/y' is caf??",
    }


async def test_methods_without_the_oauth_format_keep_the_status_shape(
    client: httpx.AsyncClient, upstream: Recorder
) -> None:
    response = await client.get("/.well-known/jwks.json?bogus=1")
    assert response.status_code == 400
    assert "cache-control" not in response.headers
    described = 'invalid parameter "bogus": unknown field'
    assert response.json() == {
        "error": described,
        "code": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "INVALID_QUERY_PARAMETER",
                "domain": "gateway",
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "bogus", "description": described}],
            },
        ],
    }
    assert upstream.calls == []
