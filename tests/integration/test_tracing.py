"""Tracing (issue 13 point 4): OpenTelemetry spans of REST and gRPC calls, job
transitions and engine steps, the ring of the last N traces, OTLP export to a real
local OTLP/HTTP receiver, and the TracingService's three views, on real servers."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from clients.base import CallerHeaders
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as wpb
from server.app import Application
from server.config import Settings
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.observability.tracing import nearest_rank
from tests.integration.test_workers import WorkerCalls
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock
from tests.support.orchestra import load_definition

ADMIN = ("orch:admin",)
TRACE_PATH = "/infrastructure/tracing/trace/"
JOBS = "orchestrator.jobengine.v1.JobsService"
WORKERS = "orchestrator.jobengine.v1.WorkerService"


def _headers(tenant: str, **extra: str) -> dict[str, str]:
    return {"X-Stella-Tenant": tenant, "X-Stella-Operator-Reason": "tracing tests", **extra}


@asynccontextmanager
async def _admin_client(tokens: TokenFactory, base: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await tokens.token(None, ADMIN)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def admin(tokens: TokenFactory, http_base: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of an operator client holding orch:admin (no tenant)."""
    async with _admin_client(tokens, http_base) as client:
        yield client


def _shape(span: dict[str, Any]) -> tuple[str, list[Any]]:
    """A span tree as (name, [children's shapes])."""
    return span["name"], [_shape(child) for child in span.get("children", [])]


def _walk(spans: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for span in spans:
        yield span
        yield from _walk(span.get("children", []))


async def test_a_job_enqueued_over_rest_leased_and_completed_over_grpc_is_one_trace(
    app: Application,
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    grpc_target: str,
    tenant: str,
    access_token: str,
) -> None:
    http.headers["Authorization"] = f"Bearer {access_token}"
    source = await http.post(
        "/jobengine/sources",
        json={"name": "traced", "sourceType": "manual"},
        headers=_headers(tenant),
    )
    assert source.status_code == 201, source.text
    trace_id = uuid.uuid4().hex
    caller_span = uuid.uuid4().hex[:16]
    job_type = f"trace.{uuid.uuid4().hex[:8]}"
    enqueued = await http.post(
        "/jobengine/jobs",
        json={"jobType": job_type, "sourceId": source.json()["sourceId"]},
        headers=_headers(tenant, traceparent=f"00-{trace_id}-{caller_span}-01"),
    )
    assert enqueued.status_code == 201, enqueued.text
    assert enqueued.headers["X-Stella-Trace-Id"] == trace_id
    job_id = enqueued.json()["jobId"]

    transport = GrpcTransport(grpc_target)
    try:
        workers = WorkerCalls(transport, CallerHeaders(tenant=tenant, access_token=access_token))
        (lease,) = await workers.lease([job_type], worker_id="w-1", lease=30)
        assert lease.job.job_id == job_id
        (outcome,) = await workers.complete((lease.token, {"ok": True}))
        assert outcome.job_status == "succeeded"
    finally:
        await transport.close()

    response = await admin.get(TRACE_PATH + trace_id)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    trace = response.json()
    assert trace["traceId"] == trace_id
    assert trace["spanCount"] == 4
    assert trace.get("droppedSpanCount", 0) == 0
    (root,) = trace["spans"]
    assert _shape(root) == (
        f"{JOBS}/EnqueueJob",
        [("job.enqueue", [("job.lease", []), ("job.complete", [])])],
    )
    assert root["parentSpanId"] == caller_span  # the caller's traceparent is the parent
    assert root["kind"] == "SERVER"
    assert root["status"] == "UNSET"
    assert root["attributes"] == {
        "rpc.system": "grpc",
        "rpc.service": JOBS,
        "rpc.method": "EnqueueJob",
        "rpc.grpc.status_code": 0,
        "http.route": "/jobengine/jobs",
    }
    (enqueue,) = root["children"]
    assert enqueue["parentSpanId"] == root["spanId"]
    assert enqueue["kind"] == "INTERNAL"
    assert enqueue["attributes"] == {
        "orchestrator.service": "orchestrator.jobs",
        "orchestrator.operation": "enqueue",
        "job.count": 1,
        "job.id": job_id,
        "job.type": job_type,
    }
    leased, completed = enqueue["children"]
    for span, operation, status in (
        (leased, "lease", "leased"),
        (completed, "complete", "succeeded"),
    ):
        assert span["parentSpanId"] == enqueue["spanId"]
        assert span["attributes"] == {
            "orchestrator.service": "orchestrator.jobs",
            "orchestrator.operation": operation,
            "job.id": job_id,
            "job.type": job_type,
            "job.attempt": 1,
            "job.status": status,
            "job.worker_id": "w-1",
        }
        assert span["status"] == "UNSET"
        assert span["startTime"] <= span["endTime"]
    # Each transition links to the worker's call, a trace of its own (a gRPC call: no route).
    for span, method in ((leased, "LeaseJobs"), (completed, "CompleteJobs")):
        (link,) = span["links"]
        assert link["traceId"] != trace_id
        linked = (await admin.get(TRACE_PATH + link["traceId"])).json()
        (call_root,) = linked["spans"]
        assert call_root["name"] == f"{WORKERS}/{method}"
        assert call_root["spanId"] == link["spanId"]
        assert call_root["parentSpanId"] == ""
        assert "http.route" not in call_root["attributes"]
        assert call_root["attributes"]["rpc.grpc.status_code"] == 0

    # The worker service's traces, newest first: the completion's, then the lease's.
    listed = await admin.get("/infrastructure/tracing/service/WorkerService", params={"limit": 2})
    assert listed.status_code == 200, listed.text
    summaries = listed.json()["traces"]
    assert [s["traceId"] for s in summaries] == [
        completed["links"][0]["traceId"],
        leased["links"][0]["traceId"],
    ]
    assert summaries[0]["rootName"] == f"{WORKERS}/CompleteJobs"
    assert summaries[0]["services"] == [WORKERS]
    assert summaries[0]["spanCount"] == 1
    # The jobs "service" lists the job's trace (its newest span is the completion).
    jobs = await admin.get("/infrastructure/tracing/service/orchestrator.jobs", params={"limit": 1})
    (newest,) = jobs.json()["traces"]
    assert newest["traceId"] == trace_id
    assert newest["services"] == [JOBS, "orchestrator.jobs"]
    assert newest["spanCount"] == 4


async def test_a_failed_job_is_an_error_span_in_its_trace(
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    grpc_target: str,
    tenant: str,
    access_token: str,
) -> None:
    http.headers["Authorization"] = f"Bearer {access_token}"
    source = await http.post(
        "/jobengine/sources",
        json={"name": "failing", "sourceType": "manual"},
        headers=_headers(tenant),
    )
    job_type = f"trace.{uuid.uuid4().hex[:8]}"
    enqueued = await http.post(
        "/jobengine/jobs",
        json={"jobType": job_type, "sourceId": source.json()["sourceId"], "maxAttempts": 1},
        headers=_headers(tenant),
    )
    trace_id = enqueued.headers["X-Stella-Trace-Id"]
    transport = GrpcTransport(grpc_target)
    try:
        workers = WorkerCalls(transport, CallerHeaders(tenant=tenant, access_token=access_token))
        (lease,) = await workers.lease([job_type], lease=30)
        failure = wpb.JobFailure(
            token=lease.token, category="transient", code="E1", message="boom", retryable=False
        )
        (outcome,) = await workers.fail(failure)
        assert outcome.job_status == "dead_lettered"
    finally:
        await transport.close()
    trace = (await admin.get(TRACE_PATH + trace_id)).json()
    (root,) = trace["spans"]
    assert _shape(root) == (
        f"{JOBS}/EnqueueJob",
        [("job.enqueue", [("job.lease", []), ("job.dead_letter", [])])],
    )
    dead = root["children"][0]["children"][1]
    assert dead["status"] == "ERROR"
    assert dead["statusMessage"] == "transient/E1: boom"
    assert dead["attributes"]["job.status"] == "dead_lettered"


async def test_expired_leases_are_spans_of_the_job_trace_without_a_link(
    app: Application,
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    grpc_target: str,
    tenant: str,
    access_token: str,
    clock: TestClock,
) -> None:
    """The reaper expires a lease (requeued), then the last attempt's (dead-lettered):
    both in the job's trace; a background loop has no call to link."""
    http.headers["Authorization"] = f"Bearer {access_token}"
    source = await http.post(
        "/jobengine/sources",
        json={"name": "expiring", "sourceType": "manual"},
        headers=_headers(tenant),
    )
    job_type = f"trace.{uuid.uuid4().hex[:8]}"
    enqueued = await http.post(
        "/jobengine/jobs",
        json={"jobType": job_type, "sourceId": source.json()["sourceId"], "maxAttempts": 2},
        headers=_headers(tenant),
    )
    trace_id = enqueued.headers["X-Stella-Trace-Id"]
    assert app._reaper is not None
    transport = GrpcTransport(grpc_target)
    try:
        workers = WorkerCalls(transport, CallerHeaders(tenant=tenant, access_token=access_token))
        for _ in range(2):
            await workers.lease([job_type], worker_id="w-slow", lease=1)
            clock.advance(2)
            assert await app._reaper.run_once() >= 1
    finally:
        await transport.close()
    (root,) = (await admin.get(TRACE_PATH + trace_id)).json()["spans"]
    assert _shape(root) == (
        f"{JOBS}/EnqueueJob",
        [
            (
                "job.enqueue",
                [("job.lease", []), ("job.expire", []), ("job.lease", []), ("job.dead_letter", [])],
            )
        ],
    )
    expire, dead = root["children"][0]["children"][1], root["children"][0]["children"][3]
    for span, status, attempt in ((expire, "queued", 1), (dead, "dead_lettered", 2)):
        assert span["status"] == "ERROR"
        assert span["statusMessage"] == "lease/LEASE_EXPIRED: the lease expired"
        assert span["links"] == []
        assert span["attributes"]["job.status"] == status
        assert span["attributes"]["job.attempt"] == attempt
        assert span["attributes"]["job.worker_id"] == "w-slow"


async def test_the_span_takes_the_trace_id_of_x_stella_trace_id(
    app: Application, admin: httpx.AsyncClient
) -> None:
    chosen = uuid.uuid4().hex
    response = await admin.get("/health", headers={"X-Stella-Trace-Id": chosen})
    assert response.headers["X-Stella-Trace-Id"] == chosen
    (root,) = (await admin.get(TRACE_PATH + chosen)).json()["spans"]
    assert root["name"] == "orchestrator.mesh.v1.OpsService/GetHealth"
    assert root["parentSpanId"] == ""
    assert "stella.trace_id" not in root["attributes"]
    # A token that is no W3C id: the span's id is a hash of it, the token an attribute.
    response = await admin.get("/health", headers={"X-Stella-Trace-Id": "order-42"})
    assert response.headers["X-Stella-Trace-Id"] == "order-42"
    hashed = hashlib.blake2b(b"order-42", digest_size=16).hexdigest()
    (root,) = (await admin.get(TRACE_PATH + hashed)).json()["spans"]
    assert root["name"] == "orchestrator.mesh.v1.OpsService/GetHealth"
    assert root["attributes"]["stella.trace_id"] == "order-42"
    # The lookup takes exactly what the server answered: the token, or the W3C id in
    # either case; the answer names the stored trace's W3C id.
    for asked in ("order-42", hashed, hashed.upper()):
        looked_up = await admin.get(TRACE_PATH + asked)
        assert looked_up.status_code == 200, asked
        assert looked_up.json()["traceId"] == hashed
        assert [s["name"] for s in looked_up.json()["spans"]] == [
            "orchestrator.mesh.v1.OpsService/GetHealth"
        ]
    assert (await admin.get(TRACE_PATH + chosen.upper())).json()["traceId"] == chosen
    # The all-zero W3C id is no trace id: the call gets a new one instead.
    zero = await admin.get("/health", headers={"X-Stella-Trace-Id": "0" * 32})
    assert zero.headers["X-Stella-Trace-Id"] != "0" * 32
    assert len(zero.headers["X-Stella-Trace-Id"]) == 32


async def test_unknown_and_malformed_trace_ids(admin: httpx.AsyncClient) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    response = await admin.get(TRACE_PATH + unknown)
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "NOT_FOUND"
    assert unknown in body["error"]
    assert [d.get("reason") for d in body["details"] if "reason" in d] == ["TRACE_NOT_FOUND"]
    # Ids a call can have (X-Stella-Trace-Id tokens, W3C ids of either case) are looked
    # up; absent, they are 404 naming the asked id.
    for absent in ("XYZ", "0123456789ABCDEF0123456789ABCDEF", "a" * 31, "a" * 33, "x" * 64):
        response = await admin.get(TRACE_PATH + absent)
        assert response.status_code == 404, absent
        assert response.json()["code"] == "NOT_FOUND"
        assert repr(absent) in response.json()["error"]
    # Never a trace id: the all-zero W3C id, over 64 characters, other characters.
    for bad in ("0" * 32, "a" * 65, "a b", "a%00b", "%C3%A9t%C3%A9", "a+b"):
        response = await admin.get(TRACE_PATH + bad)
        assert response.status_code == 400, bad
        body = response.json()
        assert body["code"] == "INVALID_ARGUMENT"
        fields = [
            v["field"]
            for d in body["details"]
            if d["@type"].endswith("BadRequest")
            for v in d["fieldViolations"]
        ]
        assert fields == ["trace_id"], bad
    negative = await admin.get("/infrastructure/tracing/service/JobsService", params={"limit": -1})
    assert negative.status_code == 400
    assert "limit" in negative.json()["error"]
    for bad_name in ("s" * 257, "%00", "Jobs%00Service", "a b", "%1B[31m", "%C3%A9"):
        response = await admin.get("/infrastructure/tracing/service/" + bad_name)
        assert response.status_code == 400, bad_name
        body = response.json()
        assert body["code"] == "INVALID_ARGUMENT"
        assert "service_name" in body["error"], bad_name
    nothing = await admin.get("/infrastructure/tracing/service/NoSuchService")
    assert nothing.status_code == 200
    assert nothing.json() == {"traces": []}


async def test_a_tenant_bound_client_may_not_read_traces(
    tokens: TokenFactory, http_base: str, tenant: str
) -> None:
    token = await tokens.token(tenant, ADMIN)
    async with httpx.AsyncClient(base_url=http_base, timeout=30) as client:
        response = await client.get(
            "/infrastructure/tracing/stats", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 403
    assert response.json()["code"] == "PERMISSION_DENIED"


async def test_an_orchestra_start_traces_its_engine_step(
    app: Application,
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
) -> None:
    """The engine step of a process start is a child of the start call's SERVER span."""
    definition_id = f"traced_{uuid.uuid4().hex[:8]}"
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "review", "type": "user_task"},
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "review"}, {"from": "review", "to": "done"}],
        },
    )
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    started = await http.post(
        f"/orchestra-api/process/{definition_id}/start",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert started.status_code == 201, started.text
    instance_id = started.json()["instance_id"]
    trace = (await admin.get(TRACE_PATH + started.headers["X-Stella-Trace-Id"])).json()
    (root,) = trace["spans"]
    assert _shape(root) == (
        "orchestrator.orchestra.v1.OrchestraService/StartProcess",
        [("orchestra.step", [])],
    )
    (step,) = root["children"]
    assert step["parentSpanId"] == root["spanId"]
    assert step["attributes"] == {
        "orchestrator.service": "orchestrator.orchestra",
        "orchestrator.operation": "step",
        "orchestra.instance_id": instance_id,
    }


# --- a server of the test's own: OTLP export, exact statistics, tracing off -----------


@dataclass
class OtlpReceiver:
    """A real OTLP/HTTP receiver: POST /v1/traces with a protobuf
    ExportTraceServiceRequest, decoded and kept."""

    requests: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def spans(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(trace id, name, resource attributes) of every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        found.append((span.trace_id.hex(), span.name, resource))
        return found


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    received = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.paths.append(self.path)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            message = trace_service_pb2.ExportTraceServiceRequest()
            message.ParseFromString(body)
            received.requests.append(message)
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@asynccontextmanager
async def _own_server(tmp_path: Path, **settings: Any) -> AsyncIterator[Application]:
    own = Application(
        Settings(
            host="127.0.0.1",
            port=0,
            grpc_port=0,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'own.db'}",
            shutdown_grace_seconds=1,
            **settings,
        )
    )
    await own.start()
    try:
        yield own
    finally:
        await own.stop(grace=1)


async def test_stats_are_exact_and_spans_reach_a_real_otlp_receiver(
    tmp_path: Path,
    otlp_receiver: tuple[OtlpReceiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver, endpoint = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orchestrator-under-test")
    calls: list[str] = []
    async with _own_server(tmp_path, tracing_max_traces=50) as own:
        assert own.tracing is not None and own.tracing.exporting
        base = f"http://127.0.0.1:{own.http_port}"
        async with _admin_client(TokenFactory(own, base), base) as admin:
            # Only the token request ran so far (OAuthService/Token): start from a clean ring.
            own.tracing.ring.clear()
            for _ in range(2):
                health = await admin.get("/health")
                assert health.status_code == 200
                calls.append(health.headers["X-Stella-Trace-Id"])
            for _ in range(3):
                missing = await admin.get(TRACE_PATH + uuid.uuid4().hex)
                assert missing.status_code == 404
                calls.append(missing.headers["X-Stella-Trace-Id"])
            stats = await admin.get("/infrastructure/tracing/stats")
            assert stats.status_code == 200, stats.text
            durations: dict[str, list[float]] = {"GetHealth": [], "GetTrace": []}
            for trace_id in calls:
                (root,) = (await admin.get(TRACE_PATH + trace_id)).json()["spans"]
                durations[root["attributes"]["rpc.method"]].append(root["durationMs"])
                assert root["attributes"]["http.route"] in ("/health", TRACE_PATH + "{trace_id}")

        body = stats.json()
        assert body["enabled"] is True
        assert body["maxTraces"] == 50
        assert body["traceCount"] == 5
        assert body["spanCount"] == 5
        expected = []
        for service, method in (
            ("orchestrator.mesh.v1.OpsService", "GetHealth"),
            ("orchestrator.mesh.v1.TracingService", "GetTrace"),
        ):
            values = sorted(durations[method])
            expected.append(
                {
                    "service": service,
                    "method": method,
                    "count": str(len(values)),
                    # NOT_FOUND is the caller's mistake, not a server error (OpenTelemetry
                    # RPC conventions)
                    "errors": "0",
                    "p50Ms": nearest_rank(values, 0.5),
                    "p95Ms": nearest_rank(values, 0.95),
                }
            )
        assert body["methods"] == expected
        exported_ids = set(calls)
    # Stopped: the batch exporter flushed to the receiver.
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    assert exported_ids <= {trace_id for trace_id, _, _ in spans}
    names = {name for trace_id, name, _ in spans if trace_id in exported_ids}
    assert names == {
        "orchestrator.mesh.v1.OpsService/GetHealth",
        "orchestrator.mesh.v1.TracingService/GetTrace",
    }
    assert {resource["service.name"] for _, _, resource in spans} == {"orchestrator-under-test"}


async def test_tracing_off_records_no_spans(tmp_path: Path, app: Application, tenant: str) -> None:
    async with _own_server(tmp_path, tracing_enabled=False) as own:
        assert own.tracing is None
        base = f"http://127.0.0.1:{own.http_port}"
        own_tokens = TokenFactory(own, base)
        token = await own_tokens.token(tenant)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            http.headers["Authorization"] = f"Bearer {token}"
            source = await http.post(
                "/jobengine/sources",
                json={"name": "off", "sourceType": "manual"},
                headers=_headers(tenant),
            )
            enqueued = await http.post(
                "/jobengine/jobs",
                json={"jobType": "trace.off", "sourceId": source.json()["sourceId"]},
                headers=_headers(tenant),
            )
            assert enqueued.status_code == 201
            trace_id = enqueued.headers["X-Stella-Trace-Id"]
            assert enqueued.json()["jobId"]
        async with _admin_client(own_tokens, base) as admin:
            stats = await admin.get("/infrastructure/tracing/stats")
            assert stats.status_code == 200
            assert stats.json() == {
                "enabled": False,
                "methods": [],
                "traceCount": 0,
                "spanCount": 0,
                "maxTraces": 0,
            }
            assert (await admin.get(TRACE_PATH + trace_id)).status_code == 404
            assert (await admin.get("/infrastructure/tracing/service/JobsService")).json() == {
                "traces": []
            }
    # Nor did the job spans go to another server's ring in this process.
    assert app.tracing is not None
    assert app.tracing.ring.get(int(trace_id, 16)) is None
    await asyncio.sleep(0)
