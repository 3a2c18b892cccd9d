"""/config/effective's pieces: secret names, URL credentials, value sources
(server/observability/redaction.py, config_report.py, server/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Settings, load_settings, value_sources
from server.observability.config_report import effective_config
from server.observability.redaction import (
    REDACTED,
    is_secret_name,
    redact_text,
    redact_url,
    words,
)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ORCHESTRATOR_PAGE_TOKEN_SECRET", True),
        ("DB_PASSWORD", True),
        ("apiKey", True),
        ("api-key", True),
        ("ACCESS_TOKEN", True),
        ("AWS_CREDENTIALS", True),
        ("PRIVATE_PEM", True),
        ("pwd", True),
        ("MONKEY_COUNT", False),
        ("KEYNOTE_URL", False),
        ("TOKENIZER", False),
        ("PORT", False),
        ("ORCHESTRATOR_DATABASE_URL", False),
    ],
)
def test_secret_names_are_whole_words(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_words_split_at_separators_and_humps() -> None:
    assert words("pageTokenSecret") == ["page", "token", "secret"]
    assert words("HTTPServerKey") == ["http", "server", "key"]
    assert words("DB_URL-v2.name") == ["db", "url", "v", "2", "name"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+asyncpg://orch:s3cret@db:5432/o",
            f"postgresql+asyncpg://{REDACTED}@db:5432/o",
        ),
        ("https://ghp_token@host/repo", f"https://{REDACTED}@host/repo"),
        ("http://id:a%2Fb%40c@peer:5099", f"http://{REDACTED}@peer:5099"),
        # An unescaped "/" or "@" in the password still hides all of it.
        ("postgresql://u:pa/ss@h/db", f"postgresql://{REDACTED}@h/db"),
        ("postgresql://u:p@ss@h/db", f"postgresql://{REDACTED}@h/db"),
        ("https://h/x?password=1&a=2", f"https://h/x?password={REDACTED}&a=2"),
        ("https://h/x?access_token=t&page=2", f"https://h/x?access_token={REDACTED}&page=2"),
        ("redis://:pw@r:6379/0", f"redis://{REDACTED}@r:6379/0"),
    ],
)
def test_url_credentials_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == (shown, True)
    assert "s3cret" not in redact_url(url)[0]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///./var/orchestrator.db",
        "https://h/users/@me",
        "http://reporting:5030",
        "https://h/x?page=2",
        "not a url",
    ],
)
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert redact_url(url) == (url, False)


def test_every_url_of_a_list_is_redacted() -> None:
    text = "http://a:1@p1:5099, https://b:2@p2, http://p3"
    assert redact_text(text) == (
        f"http://{REDACTED}@p1:5099, https://{REDACTED}@p2, http://p3",
        True,
    )


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text("")
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_FILE", str(path))
    for name in (
        "PORT",
        "GRPC_PORT",
        "ORCHESTRATOR_DATABASE_URL",
        "ORCHESTRATOR_PEERS",
        "ORCHESTRATOR_PAGE_TOKEN_SECRET",
        "LOG_LEVEL",
        "REPORTING_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return path


def test_sources_follow_precedence(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text("orchestrator:\n  PORT: 6000\n  GRPC_PORT: 6001\nLOG_LEVEL: debug\n")
    monkeypatch.setenv("GRPC_PORT", "7001")
    settings = load_settings().model_copy(update={"log_level": "ERROR"})
    sources = value_sources(settings)
    assert sources["port"] == "file"
    assert sources["grpc_port"] == "env"
    assert sources["log_level"] == "override"  # the program changed it
    assert sources["host"] == "default"
    assert value_sources(load_settings(host="0.0.0.0"))["host"] == "override"


def test_effective_config_hides_every_secret(config_file: Path) -> None:
    config_file.write_text(
        "ORCHESTRATOR_PEERS: http://peer-id:peer-secret@peer-a:5099,http://peer-b:5099\n"
    )
    settings = load_settings(
        database_url="postgresql+asyncpg://orch:db-secret@db/o",
        page_token_secret="page-secret-of-16-bytes",
        reporting_url="https://user:report-secret@reporting:5030/x?token=query-secret",
    )
    entries = {entry.name: entry for entry in effective_config(settings, value_sources(settings))}
    shown = repr([(e.name, e.value) for e in entries.values()])
    for secret in ("peer-secret", "peer-id", "db-secret", "page-secret-of", "report-secret"):
        assert secret not in shown
    assert "query-secret" not in shown
    database = entries["ORCHESTRATOR_DATABASE_URL"]
    assert (database.value, database.source, database.redacted) == (
        f"postgresql+asyncpg://{REDACTED}@db/o",
        "override",
        True,
    )
    page = entries["ORCHESTRATOR_PAGE_TOKEN_SECRET"]
    assert (page.value, page.redacted) == (REDACTED, True)
    peers = entries["ORCHESTRATOR_PEERS"]
    assert (peers.value, peers.source, peers.redacted) == (
        f"http://{REDACTED}@peer-a:5099,http://peer-b:5099",
        "file",
        True,
    )
    reporting = entries["REPORTING_URL"]
    assert reporting.value == f"https://{REDACTED}@reporting:5030/x?token={REDACTED}"
    port = entries["PORT"]
    assert (port.value, port.source, port.redacted) == (5099, "default", False)
    derived = effective_config(settings, value_sources(settings), derived={"public_url"})
    assert {e.name: e.source for e in derived}["ORCHESTRATOR_PUBLIC_URL"] == "derived"


def test_an_unset_secret_shows_empty() -> None:
    settings = Settings.model_construct()
    entries = {e.name: e for e in effective_config(settings, {})}
    page = entries["ORCHESTRATOR_PAGE_TOKEN_SECRET"]
    assert (page.value, page.redacted) == ("", False)
