"""Shared fixtures: real databases (a SQLite file and PostgreSQL), real servers on
loopback ports, and clients over every transport.

PostgreSQL is not optional: when it cannot be reached the suite fails, it never
skips. Each run gets its own database, dropped at the end, so runs do not collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from clients.base import CallerHeaders
from clients.sources import SourcesClient
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.transports.inprocess import InProcessTransport
from clients.transports.rest import RestTransport
from server.app import Application
from server.config import Settings
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock
from tests.support.stub_upstream import StubUpstream, stub_upstream

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# The PostgreSQL run of every database test carries the `postgres` marker.
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))
INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need PostgreSQL live under tests/integration: refuse to run others."""
    misplaced = [
        item.nodeid
        for item in items
        if item.get_closest_marker("postgres") is not None and INTEGRATION not in item.path.parents
    ]
    if misplaced:
        raise pytest.UsageError(
            "tests that need PostgreSQL belong under tests/integration: " + ", ".join(misplaced)
        )


async def _create_pg_database() -> tuple[str, str]:
    name = f"orch_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}", pytrace=False)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    return name, url.render_as_string(hide_password=False)


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "orchestrator.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    name, url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(name)


def settings_for(database_url: str) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        grpc_port=0,
        database_url=database_url,
        shutdown_grace_seconds=1,
    )


@pytest.fixture(scope="session")
def clock() -> TestClock:
    """The time of every test server: real time until a test moves it forward."""
    return TestClock()


@pytest.fixture(scope="session")
async def upstream_stub() -> AsyncIterator[StubUpstream]:
    """A real HTTP server standing in for the doc store, reporting and the analyzer, so
    the proxies of the session's server answer 2xx (security suite, schemathesis)."""
    async with stub_upstream() as stub:
        yield stub


@pytest.fixture(scope="session")
async def app(
    database_url: str, clock: TestClock, upstream_stub: StubUpstream
) -> AsyncIterator[Application]:
    # Not NOTIFICATION_URL: other tests' notify.consolidation jobs stay queued.
    upstreams = {
        "doc_store_url": upstream_stub.url,
        "reporting_url": upstream_stub.url,
        "secure_analyzer_url": upstream_stub.url,
    }
    settings = settings_for(database_url).model_copy(update=upstreams)
    application = Application(settings, clocks=clock.clocks())
    await application.start()
    try:
        yield application
    finally:
        await application.stop(grace=1)


@pytest.fixture(scope="session")
def grpc_target(app: Application) -> str:
    return f"127.0.0.1:{app.grpc_port}"


@pytest.fixture(scope="session")
def http_base(app: Application) -> str:
    return f"http://127.0.0.1:{app.http_port}"


@pytest.fixture
async def http(http_base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=http_base, timeout=30) as client:
        yield client


@pytest.fixture
def tenant() -> str:
    """A fresh tenant per test: tests share a database but never each other's rows."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tokens(app: Application, http_base: str) -> TokenFactory:
    """Real access tokens from the running server's token endpoint."""
    return TokenFactory(app, http_base)


@pytest.fixture
async def access_token(tokens: TokenFactory, tenant: str) -> str:
    """A token of a client bound to this test's tenant, with orch:read and orch:operate."""
    return await tokens.token(tenant)


@pytest.fixture
async def auth_headers(tenant: str, access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}", "X-Stella-Tenant": tenant}


TRANSPORTS = ("grpc", "rest", "inprocess")


@pytest.fixture(params=TRANSPORTS)
async def transport(
    request: pytest.FixtureRequest, app: Application, grpc_target: str, http_base: str
) -> AsyncIterator[Transport]:
    """One transport per run of the test: gRPC, REST (through the in-process gateway's
    HTTP port) or in-process (the server's own upstream, no socket)."""
    made: Transport
    if request.param == "grpc":
        made = GrpcTransport(grpc_target)
    elif request.param == "rest":
        made = RestTransport(http_base)
    else:
        made = InProcessTransport(app.gateway.upstream)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def caller_headers(tenant: str, access_token: str) -> CallerHeaders:
    return CallerHeaders(tenant=tenant, operator_reason="test run", access_token=access_token)


@pytest.fixture
def sources_client(transport: Transport, caller_headers: CallerHeaders) -> SourcesClient:
    return SourcesClient(transport, caller_headers)
