"""Peers (issue 12 point 5): two real `orchestrator serve` processes, each the other's
peer through ORCHESTRATOR_PEERS with the credentials of a client registered on the
other beforehand (`orchestrator clients create --tenants '' --scope orch:admin`),
converge by POST /registry/sync-peers, also when one of them is down during the first
sync; syncing again changes nothing (idempotent, no echo); GET /peers shows each
peer without credentials; no answer and no log line carries a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import Server
from tests.support.process import ORCHESTRATOR, base_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def encoded(text: str) -> str:
    """Every character percent-encoded (RFC 3986 §2.1): the peer list must decode it."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


async def create_client(env: dict[str, str], cwd: Path, client_id: str) -> tuple[str, str]:
    """`orchestrator clients create` on the database of `env`: an operator client with
    orch:admin and no tenants; (client id, secret)."""
    proc = await asyncio.create_subprocess_exec(
        ORCHESTRATOR,
        "clients",
        "create",
        "--tenants",
        "",
        "--scope",
        "orch:admin",
        "--client-id",
        client_id,
        "--json",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    created = json.loads(out.decode().strip().splitlines()[-1])
    return created["client_id"], created["client_secret"]


@dataclass
class Side:
    """One orchestrator of the pair: its environment, and the operator's client on it."""

    name: str
    cwd: Path
    port: int
    env: dict[str, str]
    operator: tuple[str, str] = ("", "")
    peer_client: tuple[str, str] = ("", "")  # the client the *other* side uses here
    server: Server | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = Server(self.env, self.cwd, dev=False)

    def stop(self) -> None:
        if self.server is not None and self.server.alive():
            self.server.stop()

    @property
    def output(self) -> str:
        return self.server.output if self.server is not None else ""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    sides = []
    for name in ("a", "b"):
        cwd = tmp_path / name
        cwd.mkdir()
        port = free_port()
        env = base_env(cwd, PORT=str(port), PEER_TIMEOUT_SECONDS="5", LOG_LEVEL="DEBUG")
        sides.append(Side(name, cwd, port, env))
    a, b = sides
    yield a, b
    for side in sides:
        side.stop()


async def _configure(a: Side, b: Side) -> None:
    for side, other in ((a, b), (b, a)):
        side.operator = await create_client(side.env, side.cwd, f"operator-{side.name}")
        side.peer_client = await create_client(side.env, side.cwd, f"peer-{other.name}")
    for side, other in ((a, b), (b, a)):
        client_id, secret = other.peer_client
        side.env["ORCHESTRATOR_PEERS"] = (
            f"http://{encoded(client_id)}:{encoded(secret)}@127.0.0.1:{other.port}/"
        )


@contextlib.asynccontextmanager
async def _admin(side: Side) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=side.base, timeout=30) as http:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "orch:admin"},
            auth=side.operator,
        )
        assert response.status_code == 200, response.text
        http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        http.headers["X-Stella-Operator-Reason"] = f"peer test on {side.name}"
        yield http


async def _register(http: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
    response = await http.post("/registry/register", json={"name": name, "baseUrl": url})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _sync(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post("/registry/sync-peers", json={})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _registry(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await http.get("/registry")
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _peers(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/peers")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_two_servers_converge_also_when_one_was_down_at_the_first_sync(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    await _configure(a, b)
    secrets = [a.peer_client[1], b.peer_client[1], encoded(a.peer_client[1])]
    seen: list[str] = []
    a.start()  # b is down
    async with _admin(a) as on_a:
        alpha = await _register(on_a, "alpha", "http://alpha.internal")
        await _register(on_a, "shared", "http://shared-by-a.internal")
        first = await _sync(on_a)
        seen.append(json.dumps(first))
        [result] = first["results"]
        assert result["url"] == b.base
        assert result["status"] == "unreachable"
        assert result["message"] == f"POST {b.base}/oauth/token failed: ConnectError"
        assert (result["sent"], result["received"], result["applied"]) == (0, 0, 0)
        assert "registryVersion" not in result
        peers = await _peers(on_a)
        seen.append(json.dumps(peers))
        [peer] = peers["items"]
        assert peer["url"] == b.base and peer["status"] == "unreachable"
        assert "lastContactAt" not in peer and "lastAttemptAt" in peer
        assert peer["lastError"] == result["message"]

        b.start()
        async with _admin(b) as on_b:
            await asyncio.sleep(0.01)  # b's writes come after a's: b's `shared` wins
            beta = await _register(on_b, "beta", "http://beta.internal")
            shared_b = await _register(on_b, "shared", "http://shared-by-b.internal")

            second = await _sync(on_a)
            seen.append(json.dumps(second))
            [result] = second["results"]
            assert result["status"] == "synced", result
            assert "message" not in result
            # a pulled beta and shared (b's is newer), pushed alpha only.
            assert (result["received"], result["applied"]) == (2, 2)
            assert (result["sent"], result["acceptedByPeer"]) == (1, 1)
            assert result["registryVersion"] == second["registryVersion"]

            on_a_items, on_b_items = await _registry(on_a), await _registry(on_b)
            assert on_a_items == on_b_items
            assert [item["name"] for item in on_a_items] == ["alpha", "beta", "shared"]
            by_name = {item["name"]: item for item in on_a_items}
            assert by_name["alpha"] == alpha
            assert by_name["beta"] == beta
            assert by_name["shared"] == shared_b
            assert by_name["shared"]["baseUrl"] == "http://shared-by-b.internal"
            assert by_name["alpha"]["origin"] != by_name["beta"]["origin"]

            # Idempotent from either side, and nothing echoes back.
            third = await _sync(on_b)
            [result] = third["results"]
            assert result["status"] == "synced"
            assert (result["sent"], result["acceptedByPeer"], result["applied"]) == (0, 0, 0)
            assert result["received"] == 3
            assert third["registryVersion"] == second["registryVersion"]
            fourth = await _sync(on_a)
            [result] = fourth["results"]
            assert (result["sent"], result["acceptedByPeer"], result["applied"]) == (0, 0, 0)
            assert await _registry(on_a) == on_a_items

            # A later write on b wins on a at the next sync (last writer wins).
            changed = await _register(on_b, "alpha", "http://alpha-moved.internal")
            assert changed["revision"] == "2"
            fifth = await _sync(on_b)
            assert fifth["results"][0]["sent"] == 1
            assert {i["name"]: i for i in await _registry(on_a)}["alpha"] == changed

            peers_a, peers_b = await _peers(on_a), await _peers(on_b)
            seen += [json.dumps(peers_a), json.dumps(peers_b)]
            [peer] = peers_a["items"]
            assert peer["url"] == b.base and peer["status"] == "synced"
            assert "lastContactAt" in peer and "lastError" not in peer
            assert peers_b["items"][0]["url"] == a.base
            assert peers_b["items"][0]["registryVersion"] == peers_a["registryVersion"]
            assert peers_a["registryVersion"] == peers_b["registryVersion"]
    a.stop()
    b.stop()
    for text in [*seen, a.output, b.output]:
        for secret in secrets:
            assert secret not in text


async def test_a_peer_that_refuses_the_credentials_is_unauthorized(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    await _configure(a, b)
    client_id, _ = b.peer_client
    a.env["ORCHESTRATOR_PEERS"] = f"http://{client_id}:wrong-secret@127.0.0.1:{b.port}"
    a.start()
    b.start()
    async with _admin(a) as on_a:
        [result] = (await _sync(on_a))["results"]
    assert result["status"] == "unauthorized"
    assert result["message"] == (
        f"POST {b.base}/oauth/token refused this server's client credentials: invalid_client"
    )
    assert "wrong-secret" not in a.output + b.output
