"""The operations API on the running server (issue 12 points 1-3; DESIGN.md §4.4):
liveness, readiness and gRPC health, /info, /config/effective and /metrics, on SQLite
and PostgreSQL, over REST and gRPC."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.jobengine.v1 import worker_service_pb2, worker_service_pb2_grpc
from orchestrator.mesh.v1 import ops_service_pb2, ops_service_pb2_grpc
from server.app import SERVICES, Application
from server.config import Settings
from server.domain.health import Check, LoopState, Readiness
from server.interceptors.audit import REASON_HEADER
from server.observability.domain_gauges import DomainGauges
from server.observability.operations import Operations
from server.storage.db import Database
from server.storage.repositories import job_gauges
from server.storage.schema_state import head_revisions
from tests.support.auth import TokenFactory

OPS = "orchestrator.mesh.v1.OpsService"
NO_STORE = "no-store"
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition by (name, labels)."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match is not None, line
        labels = frozenset(LABEL.findall(match.group("labels") or ""))
        found[(match.group("name"), labels)] = float(match.group("value"))
    return found


def sample(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def _loops(app: Application) -> list[dict[str, Any]]:
    """The loop checks of a healthy server: every registered loop, in registration order;
    the ones server/app.py registers itself with their exact detail."""
    ours = {"lease-reaper": "running", "job-pruner": "running"}
    if not app.db.is_sqlite:
        ours["wakeup-listener"] = "listening"
    assert set(ours) <= set(app.readiness.names)
    return [
        {"name": f"loop:{name}", "ready": True, "detail": ours.get(name, "running")}
        for name in app.readiness.names
    ]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).parents[2])
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=False)


# --- liveness and readiness -------------------------------------------------------------


async def test_health_is_open_and_ok(http: httpx.AsyncClient, grpc_target: str) -> None:
    response = await http.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert response.headers["cache-control"] == NO_STORE
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = ops_service_pb2_grpc.OpsServiceStub(channel)
        answer = await stub.GetHealth(ops_service_pb2.GetHealthRequest())
    assert answer.status == "ok"


async def test_ready_names_every_check(app: Application, http: httpx.AsyncClient) -> None:
    response = await http.get("/ready")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == NO_STORE
    head = ", ".join(head_revisions())
    assert response.json() == {
        "status": "ready",
        "checks": [
            {"name": "database", "ready": True, "detail": "reachable"},
            {"name": "migrations", "ready": True, "detail": f"at {head}"},
            *_loops(app),
        ],
    }


async def test_a_stopped_loop_makes_the_server_unready_over_rest_and_grpc_health(
    app: Application, http: httpx.AsyncClient, grpc_target: str
) -> None:
    """A registered loop that stops: /ready 503 naming it, gRPC health NOT_SERVING for the
    server and every service; back to ready and SERVING when it runs again."""
    state = LoopState(False, "stopped: RuntimeError: boom")
    app.readiness.register("test-loop", lambda: state)
    try:
        response = await http.get("/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["code"] == "UNAVAILABLE"
        assert body["error"] == "not ready: loop:test-loop: stopped: RuntimeError: boom"
        assert body["details"][0]["reason"] == "NOT_READY"
        assert body["details"][0]["metadata"] == {"loop:test-loop": "stopped: RuntimeError: boom"}
        assert await app.health.refresh() is False
        async with grpc.aio.insecure_channel(grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", OPS, *(s.full_name for s in SERVICES)):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
            ops = ops_service_pb2_grpc.OpsServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ops.GetReadiness(ops_service_pb2.GetReadinessRequest())
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            state = LoopState(True, "running")
            assert (await http.get("/ready")).status_code == 200
            assert await app.health.refresh() is True
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        app.readiness.unregister("test-loop")
        await app.health.refresh()


def test_loop_names_are_slugs_and_registered_once(app: Application) -> None:
    with pytest.raises(ValueError, match="lower-case slug"):
        app.readiness.register("Lease Reaper", lambda: LoopState(True, ""))
    with pytest.raises(ValueError, match="already registered"):
        app.readiness.register("lease-reaper", lambda: LoopState(True, ""))


# --- info and config ----------------------------------------------------------------------


async def test_info_needs_orch_read_and_says_what_runs(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    assert (await http.get("/info")).status_code == 401
    token = await tokens.token(tenant, ["orch:read"])
    # the server's wall clock (startTime is read from it; earlier tests move it forward)
    before = datetime.fromtimestamp(app.clocks.wall(), UTC)
    response = await http.get("/info", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == NO_STORE
    body = response.json()
    assert set(body) == {
        "name",
        "version",
        "gitRevision",
        "startTime",
        "uptime",
        "apiVersions",
        "databaseBackend",
    }
    # The revision is read once per process: the checkout's HEAD when the first server
    # of this test run started, which the checkout's HEAD now is or descends from.
    assert re.fullmatch(r"[0-9a-f]{40}", body["gitRevision"])
    assert _git("merge-base", "--is-ancestor", body["gitRevision"], "HEAD").returncode == 0
    assert (body["name"], body["version"]) == ("orchestrator", "0.1.0")
    assert body["apiVersions"] == sorted({s.file.package for s in SERVICES})
    assert "orchestrator.mesh.v1" in body["apiVersions"]
    backend = "sqlite" if app.db.is_sqlite else "postgresql"
    assert body["databaseBackend"] == backend
    started = datetime.fromisoformat(body["startTime"].replace("Z", "+00:00"))
    assert started <= before
    uptime = float(body["uptime"].removesuffix("s"))
    now = datetime.fromtimestamp(app.clocks.wall(), UTC)
    assert 0 < uptime <= (now - started).total_seconds() + 1


async def test_effective_config_needs_orch_admin_and_gives_sources(
    app: Application, http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    reader = await tokens.token(tenant, ["orch:read"])
    refused = await http.get("/config/effective", headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    # Platform level: a client bound to a tenant is refused whatever its scopes.
    tenant_admin = await tokens.token(tenant, ["orch:admin"])
    bound = await http.get("/config/effective", headers={"Authorization": f"Bearer {tenant_admin}"})
    assert bound.status_code == 403
    assert bound.json()["details"][0]["reason"] == "OPERATOR_CLIENT_REQUIRED"
    admin = await tokens.token(None, ["orch:admin"])  # an operator client of no tenant
    response = await http.get("/config/effective", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == NO_STORE
    body = response.json()
    values = {entry["name"]: entry for entry in body["values"]}
    assert [entry["name"] for entry in body["values"]] == sorted(values)
    assert values["GRPC_PORT"] == {
        "name": "GRPC_PORT",
        "value": 0,
        "source": "override",
        "redacted": False,
    }
    # The PostgreSQL test URL's userinfo is a bare user name: hidden all the same (a
    # lone userinfo is often a token, https://TOKEN@host).
    url = app.settings.database_url
    shown = url if app.db.is_sqlite else url.replace("//postgres@", "//**redacted**@")
    assert values["ORCHESTRATOR_DATABASE_URL"] == {
        "name": "ORCHESTRATOR_DATABASE_URL",
        "value": shown,
        "source": "override",
        "redacted": not app.db.is_sqlite,
    }
    assert values["ORCHESTRATOR_PUBLIC_URL"] == {
        "name": "ORCHESTRATOR_PUBLIC_URL",
        "value": f"http://127.0.0.1:{app.http_port}",
        "source": "derived",
        "redacted": False,
    }
    assert values["LEASE_REAPER_INTERVAL_SECONDS"] == {
        "name": "LEASE_REAPER_INTERVAL_SECONDS",
        "value": 5,
        "source": "default",
        "redacted": False,
    }
    # The page-token secret is unset here (stored in the database): shown empty.
    assert values["ORCHESTRATOR_PAGE_TOKEN_SECRET"] == {
        "name": "ORCHESTRATOR_PAGE_TOKEN_SECRET",
        "value": "",
        "source": "default",
        "redacted": False,
    }
    assert values["NOTIFICATION_URL"] == {
        "name": "NOTIFICATION_URL",
        "value": None,
        "source": "default",
        "redacted": False,
    }
    # The session's server calls a stub reporting service (tests/conftest.py).
    assert values["REPORTING_URL"] == {
        "name": "REPORTING_URL",
        "value": app.settings.reporting_url,
        "source": "override",
        "redacted": False,
    }


# --- metrics ------------------------------------------------------------------------------


async def test_metrics_are_open_prometheus_text_counting_rest_and_grpc(
    http: httpx.AsyncClient, grpc_target: str
) -> None:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == NO_STORE
    before = response.text
    for _ in range(3):
        assert (await http.get("/health")).status_code == 200
    assert (await http.get("/info")).status_code == 401
    assert (await http.get("/no/such/path/123")).status_code == 404
    for source_id in ("a1", "b2"):  # identifiers never become label values
        assert (await http.get(f"/jobengine/sources/{source_id}")).status_code == 401
    assert (await http.delete("/health")).status_code == 405
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = ops_service_pb2_grpc.OpsServiceStub(channel)
        await stub.GetHealth(ops_service_pb2.GetHealthRequest())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetInfo(ops_service_pb2.GetInfoRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    health = {"method": "GET", "route": "/health", "code": "200"}
    assert delta("http_server_requests_total", **health) == 3
    assert delta("http_server_request_duration_seconds_count", **health) == 3
    assert delta("http_server_request_duration_seconds_bucket", le="+Inf", **health) == 3
    assert delta("http_server_requests_total", method="GET", route="/info", code="401") == 1
    unmatched = {"method": "GET", "route": "<unmatched>", "code": "404"}
    assert delta("http_server_requests_total", **unmatched) == 1
    source = {"method": "GET", "route": "/jobengine/sources/{source_id}", "code": "401"}
    assert delta("http_server_requests_total", **source) == 2
    not_allowed = {"method": "DELETE", "route": "/health", "code": "405"}
    assert delta("http_server_requests_total", **not_allowed) == 1
    # The scrape before is counted once it was answered.
    scraped = {"method": "GET", "route": "/metrics", "code": "200"}
    assert delta("http_server_requests_total", **scraped) == 1
    grpc_health = {"grpc_service": OPS, "grpc_method": "GetHealth", "grpc_code": "OK"}
    # 3 in process for REST, 1 over gRPC.
    assert delta("grpc_server_handled_total", **grpc_health) == 4
    assert delta("grpc_server_handling_seconds_count", **grpc_health) == 4
    # REST's 401 is the gateway's (no token at all), the gRPC one the server's.
    info = {"grpc_service": OPS, "grpc_method": "GetInfo", "grpc_code": "UNAUTHENTICATED"}
    assert delta("grpc_server_handled_total", **info) == 1
    # Only the scrape being answered is in flight.
    in_flight = {"grpc_service": OPS, "grpc_method": "GetMetrics"}
    assert sample(after, "grpc_server_in_flight_requests", **in_flight) == 1
    assert (
        sample(after, "grpc_server_in_flight_requests", grpc_service=OPS, grpc_method="GetHealth")
        == 0
    )
    assert sample(after, "http_server_in_flight_requests", method="GET") == 1
    assert sample(after, "orchestrator_build_info", version="0.1.0", revision=_revision(after)) == 1


def _revision(text: str) -> str:
    for (name, labels), _ in samples(text).items():
        if name == "orchestrator_build_info":
            return dict(labels)["revision"]
    raise AssertionError("no orchestrator_build_info")


async def test_domain_gauges_count_waiting_and_leased_jobs_by_tenant_and_type(
    app: Application,
    http: httpx.AsyncClient,
    grpc_target: str,
    tenant: str,
    auth_headers: dict[str, str],
) -> None:
    headers = {**auth_headers, REASON_HEADER: "metrics test"}
    source = await http.post(
        "/jobengine/sources", json={"name": "gauges", "sourceType": "manual"}, headers=headers
    )
    assert source.status_code == 201, source.text
    source_id = source.json()["sourceId"]
    for job_type, count in (("alpha", 3), ("beta", 2)):
        for _ in range(count):
            created = await http.post(
                "/jobengine/jobs",
                json={"jobType": job_type, "sourceId": source_id},
                headers=headers,
            )
            assert created.status_code == 201, created.text
    metadata = tuple((name.lower(), value) for name, value in auth_headers.items())
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        leased = await workers.LeaseJobs(
            worker_service_pb2.LeaseJobsRequest(worker_id="w1", job_types=["alpha"], max_jobs=1),
            metadata=metadata,
        )
    assert len(leased.leases) == 1
    app.gauges.invalidate()
    scraped = time.monotonic()  # the reading is taken after this
    text = await scrape(http)
    depth = "orchestrator_jobs_queue_depth"
    assert sample(text, depth, tenant=tenant, job_type="alpha") == 2
    assert sample(text, depth, tenant=tenant, job_type="beta") == 2
    assert sample(text, "orchestrator_jobs_leased", tenant=tenant, job_type="alpha") == 1
    assert (
        "orchestrator_jobs_leased",
        frozenset({("tenant", tenant), ("job_type", "beta")}),
    ) not in samples(text)
    for gauge in ("orchestrator_jobs_queue_depth", "orchestrator_jobs_leased"):
        assert sample(text, "orchestrator_domain_gauge_up", gauge=gauge) == 1
    # Cached: a second scrape within the TTL (5 s) does not read the database again.
    # (tests/unit/server/test_health.py checks the TTL itself with a clock it moves; on
    # a box so loaded that the two scrapes are 5 s apart, the second may read.)
    reads = app.gauges.reads
    await scrape(http)
    if time.monotonic() - scraped < 5.0:
        assert app.gauges.reads == reads


async def test_concurrent_scrapes_share_one_read(app: Application, http: httpx.AsyncClient) -> None:
    app.gauges.invalidate()
    reads = app.gauges.reads
    answers = await asyncio.gather(*(http.get("/metrics") for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert app.gauges.reads == reads + 1


async def test_sqlite_gauge_queries_read_only_the_partial_indexes(tmp_path: Path) -> None:
    """The plans SQLite runs for the job gauges: the partial indexes' entries, never a
    scan of every job (server/storage/repositories/job_gauges.py)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}")
    await db.migrate()
    try:
        async with db.read() as conn:
            plans = []
            for statement in (
                job_gauges.waiting_statement(sqlite=True),
                job_gauges.leased_statement(sqlite=True),
            ):
                rows = await conn.execute(sa.text(f"EXPLAIN QUERY PLAN {statement.text}"))
                plans.append([str(row[-1]) for row in rows])
    finally:
        await db.dispose()
    assert plans == [
        ["SCAN jobs USING INDEX ix_jobs_ready"],
        ["SCAN jobs USING INDEX ix_jobs_lease_expiry", "USE TEMP B-TREE FOR GROUP BY"],
    ]


def _operations(db: Database) -> Operations:
    settings = Settings(database_url=str(db.url), HEALTH_CHECK_TIMEOUT_SECONDS=1)
    return Operations(
        settings=settings,
        db=db,
        readiness=Readiness(),
        gauges=DomainGauges(),
        sources={},
        derived=(),
        api_versions=(),
        wall=0.0,
    )


async def test_a_schema_behind_this_build_is_not_ready(app: Application) -> None:
    """The database answers but its schema is at an older revision than this build's."""
    head = head_revisions()[0]
    async with app.db.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    operations = _operations(app.db)
    try:
        checks = await operations.readiness_checks()
    finally:
        async with app.db.engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )
        await operations.aclose()
    assert checks == [
        Check("database", True, "reachable"),
        Check("migrations", False, f"at 0001, expected {head}"),
    ]


async def test_an_unreachable_database_is_not_ready() -> None:
    """Nothing listens where the database should be: both database checks fail, named."""
    db = Database("postgresql+asyncpg://orch:pw@127.0.0.1:1/none")
    operations = _operations(db)
    try:
        checks = await operations.readiness_checks()
    finally:
        await operations.aclose()
        await db.dispose()
    assert [(c.name, c.ready) for c in checks] == [("database", False), ("migrations", False)]
    assert checks[0].detail.startswith("unreachable: ")
    assert "pw" not in checks[0].detail
    assert checks[1].detail == "unknown: the database did not answer"
