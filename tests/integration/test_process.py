"""The shipped command line: serve (health, reflection, SIGTERM), migrate, tenants."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
_SERVING = re.compile(r"serving gRPC on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)")


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'o.db'}",
        "PORT": "0",
        "GRPC_PORT": "0",
        "ORCHESTRATOR_CONFIG_FILE": os.devnull,  # no config file: an empty one
    }


def _credentials(lines: list[str]) -> tuple[str, str] | None:
    """The dev client's id and secret, as `serve --dev` prints them once."""
    found = dict(
        line.strip().split("=", 1)
        for line in lines
        if line.strip().startswith(("client_id=", "client_secret="))
    )
    if "client_id" in found and "client_secret" in found:
        return found["client_id"], found["client_secret"]
    return None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int, list[str]]]:
    proc = subprocess.Popen(
        [ORCHESTRATOR, "serve", "--dev"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    ports = None
    while time.monotonic() < deadline and (ports is None or not _credentials(lines)):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := _SERVING.search(line):
            ports = int(match.group(1)), int(match.group(2))
    assert ports is not None and _credentials(lines), "".join(lines)
    try:
        yield proc, ports[0], ports[1], lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_serve_dev_answers_health_reflection_rest_and_exits_0_on_sigterm(
    served: tuple[subprocess.Popen[str], int, int, list[str]],
) -> None:
    proc, grpc_port, http_port, lines = served
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(
            health_pb2.HealthCheckRequest(service="orchestrator.jobengine.v1.SourcesService")
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(
            reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in replies[0].list_services_response.service}
        assert "orchestrator.jobengine.v1.SourcesService" in names
        assert "grpc.health.v1.Health" in names

    base = f"http://127.0.0.1:{http_port}"
    anonymous = httpx.get(f"{base}/jobengine/sources", headers={"X-Stella-Tenant": "demo"})
    assert anonymous.status_code == 401
    credentials = _credentials(lines)
    assert credentials is not None
    issued = httpx.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=credentials
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    response = httpx.get(f"{base}/jobengine/sources", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [i["name"] for i in response.json()["items"]] == [
        "manual-requests",
        "nightly-scan",
        "registry-webhook",
    ]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None
    rest = proc.stdout.read()
    assert "Traceback" not in "".join(lines) + rest
    assert "dev bootstrap: tenant 'demo'" in "".join(lines) + rest


def test_migrate_is_idempotent_and_tenants_create(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for _ in range(2):
        done = subprocess.run(
            [ORCHESTRATOR, "migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "database is at the newest schema"
    created = subprocess.run(
        [ORCHESTRATOR, "tenants", "create", "acme"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"tenant_id": "acme"}
    again = subprocess.run(
        [ORCHESTRATOR, "tenants", "create", "acme"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
