"""Proxy-mode specifics: start-up refusal, an unreachable upstream, CORS."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.app import Gateway
from gateway.bindings import bindings_for
from gateway.upstream import ChannelUpstream
from tests.conformance.conftest import ORCHESTRATOR, ROOT, start_proxy, stop
from tests.support import protos


async def test_unreachable_upstream_is_503_not_a_hang() -> None:
    service = protos.echo_pb2().DESCRIPTOR.services_by_name["EchoService"]
    gateway = Gateway(bindings_for([service]), ChannelUpstream("127.0.0.1:1"))
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        started = time.monotonic()
        response = await client.get("/v1/kitchens/k1")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json()["code"] == "UNAVAILABLE"
    await gateway.upstream.close()


def test_cors_preflight_and_simple_request(echo_upstream: str) -> None:
    proc, url = start_proxy(echo_upstream, "--cors-origins", "https://console.example")
    try:
        preflight = httpx.options(
            f"{url}/v1/kitchens/k1",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization, x-stella-tenant",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://console.example"
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert "x-stella-tenant" in preflight.headers["access-control-allow-headers"].lower()
        denied = httpx.options(
            f"{url}/v1/kitchens/k1",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert denied.status_code == 400
        simple = httpx.get(f"{url}/v1/kitchens/k1", headers={"Origin": "https://console.example"})
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == "https://console.example"
        assert "X-Stella-Trace-Id" in simple.headers["access-control-expose-headers"]
    finally:
        stop(proc)


def test_gateway_refuses_a_missing_descriptor_set(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            ORCHESTRATOR,
            "gateway",
            "--descriptor-set",
            str(tmp_path / "none.binpb"),
            "--upstream",
            "127.0.0.1:1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot read descriptor set" in done.stderr
    garbage = tmp_path / "garbage.binpb"
    garbage.write_bytes(b"\xff\xff\xff")
    bad = subprocess.run(
        [ORCHESTRATOR, "gateway", "--descriptor-set", str(garbage), "--upstream", "127.0.0.1:1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "descriptor set" in bad.stderr


def test_orchestrator_gateway_takes_the_proxy_options() -> None:
    """`orchestrator gateway` and `python -m gateway.standalone` share one option set."""
    done = subprocess.run(
        [ORCHESTRATOR, "gateway", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for option in ("--descriptor-set", "--upstream", "--cors-origins", "--trust-forwarded-headers"):
        assert option in done.stdout


def test_standalone_gateway_knows_no_product(echo_upstream: str) -> None:
    """`python -m gateway.standalone` has neutral defaults: product headers are neither
    forwarded nor allowed by CORS, and its OpenAPI names no product header or token URL;
    `orchestrator gateway` (the product's command) adds them."""
    command = (sys.executable, "-m", "gateway.standalone")
    proc, url = start_proxy(
        echo_upstream, "--cors-origins", "https://console.example", command=command
    )
    try:
        headers = {
            "X-Stella-Tenant": "acme",
            "Grpc-Metadata-Color": "blue",
            "Idempotency-Key": "k1",
        }
        echoed = httpx.post(f"{url}/v1/echo", json={}, headers=headers)
        assert echoed.status_code == 200
        seen = echoed.headers["grpc-metadata-x-echo-metadata"].split(",")
        assert "color" in seen
        assert "idempotency-key" in seen
        assert "x-stella-tenant" not in seen
        preflight = httpx.options(
            f"{url}/v1/kitchens/k1",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-stella-tenant",
            },
        )
        assert preflight.status_code == 400
        simple = httpx.get(f"{url}/v1/kitchens/k1", headers={"Origin": "https://console.example"})
        assert simple.headers["access-control-expose-headers"] == (
            "ETag, Deprecation, Link, Retry-After, WWW-Authenticate"
        )
        document = httpx.get(f"{url}/openapi.json").text
        assert "Stella" not in document
        assert "/oauth/token" not in document
    finally:
        stop(proc)
