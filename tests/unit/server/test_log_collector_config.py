"""LOG_COLLECTOR_URL and the LOG_SHIPPING_* settings (server/config.py): an absolute
http(s) URL or unset, its password never shown, the shipping bounds validated."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings, load_settings
from server.observability.config_report import effective_config


def test_an_empty_url_is_unset_and_an_http_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_COLLECTOR_URL", "")
    assert load_settings().log_collector_url is None
    monkeypatch.setenv("LOG_COLLECTOR_URL", "https://logs.example:8443/ingest")
    assert load_settings().log_collector_url == "https://logs.example:8443/ingest"


@pytest.mark.parametrize("url", ["ftp://u:hunter2@logs.example/x", "logs.example/x", "http://"])
def test_anything_else_is_a_config_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("LOG_COLLECTOR_URL", url)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith("LOG_COLLECTOR_URL: must be an absolute http:// or https:// URL")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_SHIPPING_QUEUE_MAX", "0"),
        ("LOG_SHIPPING_BATCH_MAX", "10001"),
        ("LOG_SHIPPING_INTERVAL_SECONDS", "0"),
        ("LOG_SHIPPING_TIMEOUT_SECONDS", "61"),
    ],
)
def test_shipping_bounds_are_checked(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(f"{variable}: ")


def test_the_collector_password_is_redacted_everywhere_it_is_shown() -> None:
    settings = Settings(log_collector_url="https://ship:hunter2@logs.example/ingest")
    assert "hunter2" not in str(settings.redacted()["log_collector_url"])
    [entry] = [e for e in effective_config(settings, {}) if e.name == "LOG_COLLECTOR_URL"]
    assert (entry.value, entry.redacted) == ("https://**redacted**@logs.example/ingest", True)
