"""Gateways in front of the echo API, in both modes the product supports:

- `inprocess`: the Gateway calls the echo servicer's handlers without a socket;
- `proxy`: `orchestrator gateway --descriptor-set … --upstream …` as its own process,
  in front of the echo server running as a separate grpc.aio process.

Every conformance case runs against both and must answer identically. Both carry
the product's HTTP surface (server/http_surface.py: its header prefixes, trace id,
OpenAPI security and CORS headers), as `orchestrator gateway` does; the neutral
`python -m gateway.standalone` is checked where it differs (test_proxy.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import uvicorn

from gateway.app import Gateway, GatewayConfig
from gateway.bindings import bindings_for
from gateway.inprocess import HandlerRegistry, InProcessUpstream
from server import http_surface
from tests.support import protos

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
ROOT = Path(__file__).resolve().parents[2]


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 30) -> re.Match[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    regex = re.compile(pattern)
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process exited before {pattern!r}:\n{''.join(lines)}")
        lines.append(line)
        if match := regex.search(line):
            return match


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.echo_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = _read_until(proc, r"^port (\d+)").group(1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def start_proxy(
    upstream: str, *extra: str, command: Sequence[str] = (ORCHESTRATOR, "gateway")
) -> tuple[subprocess.Popen[str], str]:
    """The proxy as its own process: `orchestrator gateway` unless `command` says
    otherwise (e.g. `python -m gateway.standalone`)."""
    proc = subprocess.Popen(
        [
            *command,
            "--descriptor-set",
            str(protos.descriptor_set_path()),
            "--upstream",
            upstream,
            "--port",
            "0",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    match = _read_until(proc, r"gateway on 127\.0\.0\.1:(\d+)")
    return proc, f"http://127.0.0.1:{match.group(1)}"


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    proc.wait(timeout=10)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    proc.stdout.close()
    return rest


@pytest.fixture(scope="session")
def proxy_gateway(echo_upstream: str) -> Iterator[str]:
    proc, url = start_proxy(echo_upstream)
    try:
        yield url
    finally:
        stop(proc)


def echo_gateway(config: GatewayConfig | None = None) -> Gateway:
    """The in-process gateway; `config` defaults to the product's, as the proxy's."""
    from tests.support.echo_server import EchoService

    registry = HandlerRegistry()
    protos.echo_pb2_grpc().add_EchoServiceServicer_to_server(EchoService(), registry)
    service = protos.echo_pb2().DESCRIPTOR.services_by_name["EchoService"]
    upstream = InProcessUpstream(registry.handlers)
    return Gateway(bindings_for([service]), upstream, config or http_surface.proxy_config())


@pytest.fixture(scope="session")
async def inprocess_gateway() -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(
            echo_gateway(),
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="off",
            proxy_headers=False,  # as every gateway is served (gateway/metadata.py)
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(params=("inprocess", "proxy"))
def gateway_url(request: pytest.FixtureRequest) -> str:
    name = "inprocess_gateway" if request.param == "inprocess" else "proxy_gateway"
    url: str = request.getfixturevalue(name)
    return url


def ndjson(text: str) -> list[object]:
    return [json.loads(line) for line in text.splitlines() if line]
