from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.config import ConfigError, Settings, load_settings


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text("")  # a named config file must exist (an absent one is a ConfigError)
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_FILE", str(path))
    for name in ("PORT", "GRPC_PORT", "ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_PEERS"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_defaults_without_file_or_env(config_file: Path) -> None:
    settings = load_settings()
    assert (settings.port, settings.grpc_port) == (5099, 50051)
    assert settings.database_url == "sqlite+aiosqlite:///./var/orchestrator.db"


def test_yaml_overrides_defaults_and_env_overrides_yaml(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text(
        "orchestrator:\n  PORT: 6000\n  GRPC_PORT: 6001\nORCHESTRATOR_PEERS: http://a,http://b\n"
    )
    settings = load_settings()
    peers = settings.peer_urls_secret.get_secret_value()
    assert (settings.port, settings.grpc_port, peers) == (6000, 6001, "http://a,http://b")
    monkeypatch.setenv("PORT", "7000")
    assert load_settings().port == 7000
    assert load_settings().grpc_port == 6001


def test_redacted_hides_secrets(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql+asyncpg://app:hunter2@db/orch")
    monkeypatch.setenv("ORCHESTRATOR_PAGE_TOKEN_SECRET", "s3cret-s3cret-s3cret")
    shown = load_settings().redacted()
    assert shown["database_url"] == "postgresql+asyncpg://app:**redacted**@db/orch"
    assert shown["page_token_secret"] == "**redacted**"
    assert "hunter2" not in repr(shown)


def test_invalid_port_is_refused(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "70000")
    with pytest.raises(ValueError, match="less than or equal to 65535"):
        load_settings()


@pytest.mark.parametrize("text", ["1.0", "80.5", "1e3", "true", "0x50", "", "8 0"])
def test_an_integer_setting_from_the_environment_must_be_digits(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_GC_GEN0_THRESHOLD", text)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"ORCHESTRATOR_GC_GEN0_THRESHOLD: must be a whole number, got {text!r}"
    )


@pytest.mark.parametrize(
    ("written", "shown"), [("true", "True"), ("false", "False"), ("80.0", "80.0")]
)
def test_an_integer_setting_in_yaml_must_be_an_integer(
    config_file: Path, written: str, shown: str
) -> None:
    """A YAML boolean is an int in Python and pydantic takes a whole float: both were
    accepted (`PORT: true` served on port 1)."""
    config_file.write_text(f"orchestrator:\n  PORT: {written}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == f"PORT: must be a whole number, got {shown}"


@pytest.mark.parametrize(("text", "value"), [("8080", 8080), (" 8080 ", 8080), ("+8_080", 8080)])
def test_integer_settings_take_digits_with_a_sign_and_underscores(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, text: str, value: int
) -> None:
    monkeypatch.setenv("PORT", text)
    config_file.write_text("orchestrator:\n  GRPC_PORT: 6_001\n")
    settings = load_settings()
    assert (settings.port, settings.grpc_port) == (value, 6001)


@pytest.mark.parametrize("written", ["017", "+017", "1_7", "17"])
def test_yaml_reads_an_integer_setting_in_base_10_as_the_environment_does(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    """YAML 1.1 (PyYAML) read `017` as octal 15, where `PORT=017` is 17: a setting
    moved from the environment to the file changed value. Both read base 10 now."""
    config_file.write_text(f"orchestrator:\n  PORT: {written}\n  GRPC_PORT: 6001\n")
    assert load_settings().port == 17
    monkeypatch.setenv("PORT", written)
    assert load_settings().port == 17


@pytest.mark.parametrize("written", ["0x1F", "0b101", "1:30", "0o17", "!!int 0x1F"])
def test_yaml_integer_forms_other_than_decimal_are_refused(config_file: Path, written: str) -> None:
    """PyYAML made these 31, 5, 90 (base 60) and, for `0o17`, text; the environment
    refuses them all. Now the file does too, naming the setting."""
    config_file.write_text(f"orchestrator:\n  PORT: {written}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    shown = written.removeprefix("!!int ")
    assert str(raised.value) == f"PORT: must be a whole number, got {shown!r}"


def test_yaml_values_that_are_not_integers_keep_their_yaml_types(config_file: Path) -> None:
    config_file.write_text(
        "orchestrator:\n  ORCHESTRATOR_TRACING_ENABLED: false\n  PORT: 6000\n"
        "  UPSTREAM_READ_TIMEOUT_SECONDS: 2.5\n  PEER_TIMEOUT_SECONDS: 3\n"
    )
    settings = load_settings()
    assert (settings.port, settings.tracing_enabled) == (6000, False)
    assert (settings.upstream_read_timeout_seconds, settings.peer_timeout_seconds) == (2.5, 3.0)


@pytest.mark.parametrize("value", [Decimal("8080.0"), Decimal("8080"), b"8080", 8080.0, True])
def test_an_integer_setting_given_in_code_must_be_an_int_or_its_digits(value: object) -> None:
    with pytest.raises(ValidationError, match="must be a whole number"):
        Settings(port=value)
    assert Settings(port=8080).port == 8080
    assert Settings(port="8080").port == 8080


def test_a_yaml_base_60_float_is_refused_as_the_environment_refuses_it(
    config_file: Path,
) -> None:
    """PyYAML read `1:30.5` as 90.5 (YAML 1.1 base 60)."""
    config_file.write_text("orchestrator:\n  SHUTDOWN_GRACE_SECONDS: 1:30.5\n")
    with pytest.raises(ConfigError, match=r"^SHUTDOWN_GRACE_SECONDS: .*got '1:30.5'$"):
        load_settings()
    config_file.write_text("orchestrator:\n  SHUTDOWN_GRACE_SECONDS: .5\n")
    assert load_settings().shutdown_grace_seconds == 0.5


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"PORT: [\n", "not valid YAML at line 2, column 1: expected the node content"),
        (b"- PORT\n", "must be a mapping of settings"),
        (b"8080\n", "must be a mapping of settings"),
        (b"orchestrator: 5\n", "its orchestrator section must be a mapping"),
        (b"PORT: \xff\n", "not UTF-8 text"),
    ],
)
def test_a_config_file_that_is_not_a_yaml_mapping_is_one_line_naming_the_file(
    config_file: Path, content: bytes, said: str
) -> None:
    """These were tracebacks (exit status 1) or, for `orchestrator: 5`, ignored."""
    config_file.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value).startswith(f"{config_file}: {said}")
    assert "\n" not in str(raised.value)


def test_a_config_file_variable_naming_a_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was skipped silently, the defaults served instead."""
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_FILE", str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"ORCHESTRATOR_CONFIG_FILE: a directory, not a file: {str(tmp_path)!r}"
    )


def test_a_long_refused_value_is_shown_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9" * 5000)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "PORT: Unable to parse input string as an integer, exceeded maximum size, got '"
        + "9" * 59
        + "..."
        + "9" * 9
        + "'"
    )
