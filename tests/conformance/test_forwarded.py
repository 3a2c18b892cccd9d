"""Forwarded-request metadata (gateway/metadata.py): what reaches the upstream as
`x-forwarded-*` is the gateway's own account of the HTTP request, never a client's.

The echo server answers the `x-forwarded-*` values it received (`x-echo-forwarded`,
JSON, every value of every key in order) and every key (`x-echo-metadata`), so a
forged value or a second copy of a key would show.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.app import GatewayConfig
from tests.conformance.conftest import echo_gateway, start_proxy, stop

FORGED = {
    "X-Forwarded-Method": "DELETE",
    "X-Forwarded-Uri": "/v1/fail/INTERNAL",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-For": "10.6.6.6",
    "X-Forwarded-Prefix": "/evil",
    "Forwarded": "for=10.6.6.6;host=evil.example;proto=https",
    "Grpc-Metadata-X-Forwarded-Uri": "/v1/fail/INTERNAL",
    "Grpc-Metadata-X-Forwarded-Host": "evil.example",
    "Grpc-Metadata-X-Forwarded-Method": "DELETE",
    "Grpc-Metadata-Forwarded": "host=evil.example",
}
TRUSTED = {
    "X-Forwarded-Proto": "https, http",
    "X-Forwarded-Host": "api.example, gw.internal",
    "X-Forwarded-For": "203.0.113.9, 198.51.100.2",
    "X-Forwarded-Method": "DELETE",
    "X-Forwarded-Uri": "/v1/fail/INTERNAL",
    "Grpc-Metadata-X-Forwarded-Host": "evil.example",
}
PATH = "/v1/echo/a%2Fb%20c"
KEYS = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-uri",
]


def received(response: httpx.Response) -> tuple[dict[str, list[str]], list[str]]:
    """(x-forwarded-* values, every metadata key outside gRPC's own) the echo saw."""
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "a/b c"
    values: dict[str, list[str]] = json.loads(response.headers["grpc-metadata-x-echo-forwarded"])
    keys = response.headers["grpc-metadata-x-echo-metadata"].split(",")
    return values, [k for k in keys if not k.startswith(("grpc-", ":", "user-agent", "te"))]


async def test_forged_forwarded_headers_never_reach_the_upstream(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(f"{PATH}?name=q", headers=FORGED)
    values, keys = received(response)
    assert values == {
        "x-forwarded-for": ["127.0.0.1"],
        "x-forwarded-host": [urlsplit(gateway_url).netloc],
        "x-forwarded-method": ["GET"],
        "x-forwarded-proto": ["http"],
        "x-forwarded-uri": [PATH],
    }
    assert keys == KEYS


async def test_method_and_uri_are_the_requests_own_on_every_binding(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.request(
            "SEARCH", "/v1/echo/rooms/r1/items/a%2Fb%3A", headers=FORGED
        )
    assert response.status_code == 200, response.text
    values = json.loads(response.headers["grpc-metadata-x-echo-forwarded"])
    assert values["x-forwarded-method"] == ["SEARCH"]
    assert values["x-forwarded-uri"] == ["/v1/echo/rooms/r1/items/a%2Fb%3A"]


async def test_a_malformed_host_is_400_before_the_upstream(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(PATH, headers={"Host": "evil.example/x"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "malformed Host header: is not a host[:port]",
        "code": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "BAD_HEADER",
                "domain": "gateway",
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": "Host", "description": "malformed Host header: is not a host[:port]"}
                ],
            },
        ],
    }


async def test_a_header_value_grpc_cannot_carry_reaches_the_upstream_escaped(
    gateway_url: str,
) -> None:
    """HTAB and obs-text are legal in HTTP field values; gRPC carries neither, so the
    value travels percent-encoded instead of breaking the call (a 500 in proxy mode)."""
    headers = httpx.Headers(
        {"Authorization": "Bearer caf\xe9", "X-Forwarded-Host": "a\tb"}, encoding="latin-1"
    )
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(PATH, headers=headers)
    values, keys = received(response)
    assert keys == ["authorization", *KEYS]
    assert values["x-forwarded-host"] == [urlsplit(gateway_url).netloc]


# --- behind a trusted proxy (`--trust-forwarded-headers`) --------------------------------


@pytest.fixture(scope="module")
def trusting_proxy(echo_upstream: str) -> Iterator[str]:
    command = (sys.executable, "-m", "gateway.standalone")
    proc, url = start_proxy(echo_upstream, "--trust-forwarded-headers", command=command)
    try:
        yield url
    finally:
        stop(proc)


async def test_trusting_proxy_keeps_the_front_proxys_values(trusting_proxy: str) -> None:
    async with httpx.AsyncClient(base_url=trusting_proxy, timeout=30) as client:
        response = await client.get(f"{PATH}?name=q", headers=TRUSTED)
    values, keys = received(response)
    assert values == {
        "x-forwarded-for": ["203.0.113.9, 198.51.100.2, 127.0.0.1"],
        "x-forwarded-host": ["api.example"],
        "x-forwarded-method": ["GET"],
        "x-forwarded-proto": ["https"],
        "x-forwarded-uri": [PATH],
    }
    assert keys == KEYS


async def test_trusting_inprocess_gateway_keeps_the_front_proxys_values() -> None:
    gateway = echo_gateway(GatewayConfig(trust_forwarded_headers=True))
    transport = httpx.ASGITransport(app=gateway, client=("192.0.2.40", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.internal") as client:
        trusted = await client.get(f"{PATH}?name=q", headers=TRUSTED)
        plain = await client.get(PATH)
    values, keys = received(trusted)
    assert values == {
        "x-forwarded-for": ["203.0.113.9, 198.51.100.2, 192.0.2.40"],
        "x-forwarded-host": ["api.example"],
        "x-forwarded-method": ["GET"],
        "x-forwarded-proto": ["https"],
        "x-forwarded-uri": [PATH],
    }
    assert keys == KEYS
    assert received(plain)[0] == {
        "x-forwarded-for": ["192.0.2.40"],
        "x-forwarded-host": ["gw.internal"],
        "x-forwarded-method": ["GET"],
        "x-forwarded-proto": ["http"],
        "x-forwarded-uri": [PATH],
    }
