"""A setting the server cannot start with is one line on stderr naming its environment
variable, and exit status 2; a port someone else holds is one line and exit status 1.
Never a traceback, never pydantic's help URL (server/config.py ConfigError)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_SETTINGS = ("PORT", "GRPC_PORT", "LOG_LEVEL", "ORCHESTRATOR_CONFIG_FILE", "HOST")


def run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    base["ORCHESTRATOR_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
        cwd=ROOT,
        check=False,
    )


def serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run(["-m", "server.cli", "serve"], env, tmp_path)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"PORT": "abc"}, "PORT: must be a whole number, got 'abc'"),
        ({"PORT": "8080.0"}, "PORT: must be a whole number, got '8080.0'"),
        ({"GRPC_PORT": "-5"}, "GRPC_PORT: Input should be greater than or equal to 0, got '-5'"),
        (
            {"LOG_LEVEL": "bogus"},
            "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'bogus'",
        ),
        (
            {"ORCHESTRATOR_DATABASE_URL": "bogus://user:hunter2@x/db"},
            "ORCHESTRATOR_DATABASE_URL: must be a SQLAlchemy URL such as "
            "postgresql+asyncpg://user:password@host/db or sqlite+aiosqlite:///path, "
            "got 'bogus://user:**redacted**@x/db'",
        ),
        (
            {"ORCHESTRATOR_PAGE_TOKEN_SECRET": "PAGESECRET123"},
            "ORCHESTRATOR_PAGE_TOKEN_SECRET: must be at least 16 bytes or empty, not 13 bytes, "
            "got '**redacted**'",
        ),
        (
            {"ORCHESTRATOR_GC_GEN0_THRESHOLD": "0"},
            "ORCHESTRATOR_GC_GEN0_THRESHOLD: Input should be greater than or equal to 1, got '0'",
        ),
        (
            {"ORCHESTRATOR_CONFIG_FILE": "/nonexistent.yaml"},
            "ORCHESTRATOR_CONFIG_FILE: no such file: '/nonexistent.yaml'",
        ),
    ],
    ids=[
        "port",
        "port-with-a-fraction",
        "grpc-port",
        "log-level",
        "database-url",
        "page-token-secret",
        "gc-gen0-threshold",
        "config-file",
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    env: dict[str, str], line: str, tmp_path: Path
) -> None:
    done = serve(env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"orchestrator: configuration error: {line}\n"
    assert done.stdout == ""


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def test_an_http_port_in_use_is_one_line_and_exit_1(taken_port: int, tmp_path: Path) -> None:
    done = serve({"PORT": str(taken_port), "GRPC_PORT": "0"}, tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"orchestrator: cannot listen on 127.0.0.1:{taken_port} (PORT): Address already in use\n"
    )


def test_a_grpc_port_in_use_is_one_line_and_exit_1(taken_port: int, tmp_path: Path) -> None:
    done = serve({"PORT": "0", "GRPC_PORT": str(taken_port), "LOG_LEVEL": "ERROR"}, tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"orchestrator: cannot listen on 127.0.0.1:{taken_port} (GRPC_PORT): address in use"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--concurrency", "0", "must be from 1 to 1000, got '0'"),
        ("--concurrency", "many", "not a number: 'many'"),
        ("--lease-duration", "nan", "must be from 1 to 3600, got 'nan'"),
        ("--grace-period", "-1", "must be at least 0, got '-1'"),
    ],
)
def test_the_example_worker_refuses_a_bad_option(
    option: str, value: str, problem: str, tmp_path: Path
) -> None:
    args = ["examples/worker.py", "--client-id", "c", "--client-secret", "s", "--job-type", "t"]
    done = run([*args, option, value], {}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"worker.py: error: argument {option}: {problem}"
