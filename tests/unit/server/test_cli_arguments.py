"""The `orchestrator` command refuses bad input with one line and exit status 2, before
touching a database: tenant ids follow the X-Stella-Tenant rule (one pattern,
server/interceptors/tenancy.py), so no tenant exists that no request can name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.interceptors.tenancy import IDENTIFIER_RULE

_RULE = IDENTIFIER_RULE


def orchestrator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ORCHESTRATOR_DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("", "''"),
        ("a\tb", "'a\\tb'"),
        ("Bad Tenant!", "'Bad Tenant!'"),
        ("-leading-dash", "'-leading-dash'"),
        ("a" * 500, f"{'a' * 20!r}... (500 characters)"),
    ],
    ids=["empty", "tab", "space-and-bang", "leading-dash", "500-chars"],
)
def test_tenants_create_refuses_an_id_the_tenant_header_could_not_name(
    value: str, shown: str
) -> None:
    done = orchestrator("tenants", "create", "--", value)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"orchestrator tenants create: error: argument tenant_id: tenant id {shown} {_RULE}"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("--tenant", "Bad Tenant!", "'Bad Tenant!'"),
        ("--tenants", "ok,Bad Tenant!", "'Bad Tenant!'"),
    ],
)
def test_clients_create_refuses_a_bad_tenant(option: str, value: str, shown: str) -> None:
    done = orchestrator("clients", "create", option, value, "--scope", "orch:read")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"orchestrator clients create: error: argument {option}: tenant id {shown} {_RULE}"
    )
