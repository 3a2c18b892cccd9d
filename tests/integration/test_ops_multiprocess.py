"""/metrics across server processes of one host (issue 12 point 3, "multi-process
safe"): two real `orchestrator serve` processes on one PostgreSQL database, started
with one PROMETHEUS_MULTIPROC_DIR, each answer the requests of both; a process that
stops keeps its counts in the sums and drops out of the in-flight gauges."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from tests.integration.test_ops import sample
from tests.support.process import ServedProcess, base_env

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
HEALTH = {"method": "GET", "route": "/health", "code": "200"}
pytestmark = pytest.mark.postgres


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    name = f"orch_metrics_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.make_url(PG_ADMIN_URL)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def two(pg_url: str, tmp_path: Path) -> Iterator[tuple[ServedProcess, ServedProcess]]:
    shared_dir = tmp_path / "prometheus"
    shared_dir.mkdir()
    shared = {"ORCHESTRATOR_DATABASE_URL": pg_url, "PROMETHEUS_MULTIPROC_DIR": str(shared_dir)}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = ServedProcess.start(base_env(tmp_path, **shared), cwd=tmp_path / "a")
    try:
        second = ServedProcess.start(base_env(tmp_path, **shared), cwd=tmp_path / "b", dev=False)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        for served in (second, first):
            if served.proc.returncode is None:  # the test may have stopped it
                served.stop()


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def test_each_process_answers_the_sum_of_both(
    two: tuple[ServedProcess, ServedProcess],
) -> None:
    first, second = two
    for _ in range(2):
        assert _get(f"{first.base}/health").status_code == 200
    for _ in range(3):
        assert _get(f"{second.base}/health").status_code == 200
    for served in (first, second):
        text = _get(f"{served.base}/metrics").text
        assert sample(text, "http_server_requests_total", **HEALTH) == 5
        assert sample(text, "http_server_request_duration_seconds_count", **HEALTH) == 5
        handled = {
            "grpc_service": "orchestrator.mesh.v1.OpsService",
            "grpc_method": "GetHealth",
            "grpc_code": "OK",
        }
        assert sample(text, "grpc_server_handled_total", **handled) == 5
        # Only this scrape is in flight, on either process.
        assert sample(text, "http_server_in_flight_requests", method="GET") == 1
    assert second.stop() == 0
    text = _get(f"{first.base}/metrics").text
    assert sample(text, "http_server_requests_total", **HEALTH) == 5  # its counts stay
    scrapes = {"method": "GET", "route": "/metrics", "code": "200"}
    assert sample(text, "http_server_requests_total", **scrapes) == 2  # one each before
    assert sample(text, "http_server_in_flight_requests", method="GET") == 1
