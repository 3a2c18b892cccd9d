"""ORCHESTRATOR_PEERS (issue 12 point 5): parsing with percent-decoded credentials, the
redacted view, configuration errors that never quote a secret, and the per-peer token
refreshed before it expires."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from server.config import ConfigError, load_settings
from server.domain.registry import PeerFailure
from server.mesh.peers import PeerConfig, PeerTokens, parse_peers, redact_peer_urls


def test_peers_parse_with_percent_decoded_credentials() -> None:
    [first, second] = parse_peers(
        " HTTP://op%40x:p%3Ass%2Fw%25rd@Peer-A.example:5099/orch/ , https://peer-b.example"
    )
    assert first.url == "http://peer-a.example:5099/orch"
    assert (first.client_id, first.client_secret is not None) == ("op@x", True)
    assert first.client_secret is not None
    assert first.client_secret.get_secret_value() == "p:ss/w%rd"
    assert "p:ss" not in repr(first) and "p%3Ass" not in repr(first)
    assert second == PeerConfig("https://peer-b.example")
    assert parse_peers("") == parse_peers(None) == parse_peers(" , ") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://id:topsecret@x", "peer 1: must be an absolute http(s) URL"),
        ("http://a, /relative", "peer 2: must be an absolute http(s) URL"),
        ("http://id:topsecret@x?y=1", "peer 1: must not have a query or fragment"),
        ("http://id@x", "peer 1: credentials must be client_id:client_secret@"),
        ("http://x:99999", "peer 1: is not a URL (bad host or port)"),
        ("http://a:1/, http://A:1", "peer 2: repeats http://a:1"),
        ("http://127.1:5099, http://127.0.0.1:5099", "peer 2: repeats http://127.0.0.1:5099"),
        ("http://a.example:80, http://A.example.", "peer 2: repeats http://a.example"),
        (
            "https://[::ffff:10.0.0.1]:443/x, https://10.0.0.1/x/",
            "peer 2: repeats https://10.0.0.1/x",
        ),
    ],
)
def test_bad_peer_lists_name_the_peer_never_the_secret(value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_peers(value)
    assert str(raised.value) == message
    assert redact_peer_urls(value) == "**redacted**"


def test_redacted_view_drops_credentials() -> None:
    assert redact_peer_urls("http://id:topsecret@a:1,https://b") == "http://a:1,https://b"
    assert redact_peer_urls("") == ""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text("")
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_FILE", str(path))
    monkeypatch.delenv("ORCHESTRATOR_PEERS", raising=False)
    return path


def test_configuration_accepts_a_yaml_list_and_redacts(config_file: Path) -> None:
    config_file.write_text(
        "orchestrator:\n  peers:\n    - http://id:topsecret@a:1\n    - https://b\n"
    )
    settings = load_settings()
    assert settings.peer_urls_secret.get_secret_value() == "http://id:topsecret@a:1,https://b"
    assert "topsecret" not in repr(settings)
    assert settings.redacted()["peer_urls_secret"] == "http://a:1,https://b"


def test_a_bad_peer_is_a_configuration_error_without_the_secret(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_PEERS", "ftp://id:topsecret@x")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "ORCHESTRATOR_PEERS: peer 1: must be an absolute http(s) URL, got '**redacted**'"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_token_is_reused_then_refreshed_before_it_expires() -> None:
    issued: list[httpx.Request] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        issued.append(request)
        body = {"access_token": f"t{len(issued)}", "expires_in": 3600, "token_type": "Bearer"}
        return httpx.Response(200, json=body)

    [peer] = parse_peers("http://id:topsecret@peer:1")
    clock = Clock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as http:
        tokens = PeerTokens(http, peer, clock=clock)
        assert await tokens.authorization() == "Bearer t1"
        clock.now += 3600 - 31  # 31 s before expiry: still good
        assert await tokens.authorization() == "Bearer t1"
        clock.now += 2  # inside the 30 s margin: refreshed
        assert await tokens.authorization() == "Bearer t2"
    assert [str(r.url) for r in issued] == ["http://peer:1/oauth/token"] * 2
    assert issued[0].headers["authorization"] == "Basic aWQ6dG9wc2VjcmV0"  # id:topsecret
    assert issued[0].content == b"grant_type=client_credentials&scope=orch%3Aadmin"


async def test_a_refused_token_request_is_unauthorized_without_the_secret() -> None:
    def token_endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    [peer] = parse_peers("http://id:topsecret@peer:1")
    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as http:
        with pytest.raises(PeerFailure) as raised:
            await PeerTokens(http, peer).authorization()
    assert raised.value.status == "unauthorized"
    assert str(raised.value) == (
        "POST http://peer:1/oauth/token refused this server's client credentials: invalid_client"
    )
