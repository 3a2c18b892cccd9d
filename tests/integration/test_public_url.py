"""Issuer follows the port (issue 8 item 8): without ORCHESTRATOR_PUBLIC_URL the server
names itself by the address it actually serves, so DPoP works on any port.

Kind: a default that stands for a value known only later (the port bound). Neighbours
covered: port 0 (known only after binding), a chosen non-default port, wildcard and
IPv6 bind addresses, and the URL the dev bootstrap prints.
"""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.identity.urls import served_url
from tests.support.process import ServedProcess, base_env
from tests.unit.identity.proofs import client_key, make_proof

DERIVED = "derived from the HTTP address; set ORCHESTRATOR_PUBLIC_URL to the URL clients use"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.mark.parametrize("port", ["0", "chosen"])
def test_issuer_is_the_served_address_and_dpop_works_on_it(tmp_path: Path, port: str) -> None:
    chosen = str(_free_port()) if port == "chosen" else port
    server = ServedProcess.start(base_env(tmp_path, PORT=chosen), cwd=tmp_path)
    try:
        issuer = f"http://127.0.0.1:{server.http_port}"
        if port == "chosen":
            assert server.http_port == int(chosen)
        assert (server.issuer, server.issuer_source) == (issuer, DERIVED)
        metadata = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
        assert (metadata["issuer"], metadata["token_endpoint"]) == (issuer, f"{issuer}/oauth/token")

        key = client_key()
        credentials = server.credentials
        assert credentials is not None
        issued = httpx.post(
            f"{issuer}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=credentials,
            headers={"DPoP": make_proof(key, htu=f"{issuer}/oauth/token")},
        )
        assert issued.status_code == 200, issued.text
        assert issued.json()["token_type"] == "DPoP"
        token = issued.json()["access_token"]
        claims = _claims(token)
        assert (claims["iss"], claims["aud"]) == (issuer, issuer)
        assert claims["cnf"] == {"jkt": key.thumbprint()}

        url = f"{issuer}/jobengine/sources"
        proof = make_proof(key, htm="GET", htu=url, access_token=token)
        listed = httpx.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        assert listed.status_code == 200, listed.text
        assert [item["name"] for item in listed.json()["items"]] == [
            "manual-requests",
            "nightly-scan",
            "registry-webhook",
        ]
    finally:
        assert server.stop() == 0
    output = "".join(server.lines)
    assert f"{issuer}/oauth/token | python3" in output  # the curl the dev bootstrap prints
    assert "Traceback" not in output


def test_a_configured_public_url_wins_and_the_start_up_line_says_so(tmp_path: Path) -> None:
    env = base_env(tmp_path, ORCHESTRATOR_PUBLIC_URL="https://api.example/orch/")
    server = ServedProcess.start(env, cwd=tmp_path, dev=False)
    try:
        assert (server.issuer, server.issuer_source) == (
            "https://api.example/orch",
            "ORCHESTRATOR_PUBLIC_URL",
        )
        metadata = httpx.get(f"{server.base}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == "https://api.example/orch"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 18099, "http://127.0.0.1:18099"),
        ("localhost", 5099, "http://localhost:5099"),
        ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
        ("", 8080, "http://127.0.0.1:8080"),
        ("::", 8080, "http://[::1]:8080"),
        ("::1", 8080, "http://[::1]:8080"),
        ("fe80::1", 443, "http://[fe80::1]:443"),
    ],
)
def test_served_url_names_a_host_a_client_can_use(host: str, port: int, url: str) -> None:
    assert served_url(host, port) == url
