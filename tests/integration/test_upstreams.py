"""The upstream proxies and the notification delivery (issue 13 point 5, "Bad input")
against a real HTTP server started here (tests/support/stub_upstream.py), never mocks:
exact bodies both ways, trace and tenant headers, 503 naming the setting, 502 with the
upstream status, garbage, the body cap, a hanging upstream (504) that does not hold up
another request, retries counted hit by hit on idempotent calls only, the breaker
opening (503 + Retry-After) and closing again, notify.consolidation jobs delivered,
retried and dead-lettered.

Timeouts here: connect 0.5 s + read 0.5 s per attempt, 2 retries, a 16 KiB cap."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from orchestrator.mesh.v1 import upstream_proxy_service_pb2, upstream_proxy_service_pb2_grpc
from server.app import Application
from server.config import Settings
from server.observability.config_report import effective_config
from tests.conftest import settings_for
from tests.support.auth import TokenFactory
from tests.support.databases import database_of_its_own
from tests.support.stub_upstream import LOG_ANALYSIS, Reply, StubUpstream, stub_upstream

CAP = 16 * 1024


@dataclass
class Served:
    app: Application
    http: httpx.AsyncClient
    stub: StubUpstream
    tokens: TokenFactory

    async def headers(self, tenant: str, **extra: str) -> dict[str, str]:
        token = await self.tokens.token(tenant)
        return {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant, **extra}


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[StubUpstream]:
    async with stub_upstream() as running:
        yield running


@pytest.fixture(scope="module")
async def own_database(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The notification delivery of `served` leases every queued notify job it finds:
    its server gets a database of its own, so other tests' jobs never reach the stub."""
    async with database_of_its_own(database_url, tmp_path_factory.mktemp("upstreams")) as url:
        yield url


@pytest.fixture(scope="module")
async def served(own_database: str, stub: StubUpstream) -> AsyncIterator[Served]:
    settings = settings_for(own_database).model_copy(
        update={
            "doc_store_url": stub.url,
            "reporting_url": stub.url + "/",
            "secure_analyzer_url": stub.url,
            "notification_url": stub.url,
            "upstream_connect_timeout_seconds": 0.5,
            "upstream_read_timeout_seconds": 0.5,
            "upstream_retries": 2,
            "upstream_breaker_failures": 1000,
            "upstream_max_body_bytes": CAP,
            "notify_poll_seconds": 0.1,
        }
    )
    app = Application(settings)
    await app.start()
    base = f"http://127.0.0.1:{app.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Served(app, http, stub, TokenFactory(app, base))
    finally:
        await app.stop(grace=1)


@pytest.fixture(autouse=True)
def _fresh_stub(stub: StubUpstream) -> None:
    stub.reset()


def _error(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """(code, message, ErrorInfo reason + metadata) of an error body."""
    body = response.json()
    info = next(d for d in body["details"] if d["@type"].endswith("ErrorInfo"))
    return body["code"], body["error"], {"reason": info["reason"], **info.get("metadata", {})}


def _violations(response: httpx.Response) -> list[str]:
    return [
        v["field"]
        for d in response.json()["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]


# --- pass-through ------------------------------------------------------------------------


async def test_docstore_save_passes_the_document_through_and_is_audited(
    served: Served, tenant: str
) -> None:
    document = {"title": "Runbook", "n": 3, "ratio": 2.5, "tags": ["a", None, True], "o": {}}
    trace = "0af7651916cd43dd8448eb211c80319c"
    headers = await served.headers(
        tenant,
        **{
            "X-Stella-Operator-Reason": "save runbook",
            "traceparent": f"00-{trace}-b7ad6b7169203331-01",
        },
    )
    served.stub.answer("/documents", Reply(json={"id": "doc-1", "stored": True, "size": 123}))
    response = await served.http.post("/docstore/save", json=document, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "doc-1", "stored": True, "size": 123}
    assert response.headers["cache-control"] == "no-store"
    [hit] = served.stub.hits
    assert (hit.method, hit.path) == ("POST", "/documents")
    assert hit.json() == document
    assert b'"n":3' in hit.body and b'"ratio":2.5' in hit.body  # integers stay integers
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["x-stella-trace-id"] == trace
    assert hit.headers["traceparent"].startswith(f"00-{trace}-")
    assert hit.headers["x-stella-tenant"] == tenant
    audit = await served.http.get(
        "/jobengine/audit", params={"action": "documents.save"}, headers=headers
    )
    [entry] = audit.json()["items"]
    assert entry["resource"] == "documents/doc-1"
    assert entry["reason"] == "save runbook"


async def test_docstore_save_needs_operate_and_the_reason(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    response = await served.http.post("/docstore/save", json={"a": 1}, headers=headers)
    assert response.status_code == 400
    assert served.stub.hits == []
    token = await served.tokens.token(tenant, ("orch:read",))
    reader = {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant}
    refused = await served.http.post(
        "/docstore/save", json={"a": 1}, headers={**reader, "X-Stella-Operator-Reason": "r"}
    )
    assert refused.status_code == 403
    assert served.stub.hits == []


async def test_report_kinds_go_to_their_paths_with_the_payload(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    for kind, path in (
        ("life_of_ticket", "/reports/life-of-ticket"),
        ("pr_confidence", "/reports/pr_confidence"),
        ("generate", "/reports/generate"),
    ):
        served.stub.reset()
        served.stub.answer(path, Reply(json={"kind": kind, "stages": [1, 2]}))
        response = await served.http.post(
            "/report/request",
            json={"kind": kind, "payload": {"ticket_id": "PROJ-1", "n": 7}},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"kind": kind, "stages": [1, 2]}
        [hit] = served.stub.hits
        assert hit.path == path
        assert hit.json() == {"ticket_id": "PROJ-1", "n": 7, "format": "json"}


async def test_unknown_report_kind_is_400_naming_kind(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    response = await served.http.post(
        "/report/request", json={"kind": "trends", "payload": {}}, headers=headers
    )
    assert response.status_code == 400
    assert _violations(response) == ["kind"]
    assert "generate, life_of_ticket, pr_confidence" in response.json()["error"]
    assert served.stub.hits == []


async def test_summarization_asks_the_allowed_models(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    response = await served.http.post(
        "/summarization/suggest",
        json={"content": "long text", "keywords": ["pii"]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    providers = [{"name": "ollama"}, {"name": "bedrock"}]
    assert response.json() == {
        "suggestion": {"allowed_models": ["ollama", "bedrock"], "sensitive": False},
        "result": {"summary": "short text", "provider": "ollama"},
        "policy_override": False,
        "providers_used": providers,
    }
    suggest, summarize = served.stub.hits
    assert (suggest.path, summarize.path) == ("/suggest", "/summarize")
    assert suggest.json() == {"content": "long text", "keywords": ["pii"], "keyword_document": None}
    assert summarize.json()["providers"] == providers
    overridden = await served.http.post(
        "/summarization/suggest",
        json={"content": "x", "override_policy": True},
        headers=headers,
    )
    assert overridden.json()["providers_used"] is None
    assert served.stub.hits[-1].json()["providers"] is None
    empty = await served.http.post("/summarization/suggest", json={"content": " "}, headers=headers)
    assert empty.status_code == 400 and _violations(empty) == ["content"]


async def test_demo_bundle_has_the_seed_shape(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    response = await served.http.post(
        "/demo/e2e", json={"format": "json", "log_limit": 1}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "summary": {"total": 3, "by_severity": {"low": 2, "med": 1}},
        "log_analysis": {
            "overview": {"count": 12, "by_level": {"info": 9, "warn": 2, "error": 1}},
            "sample": [
                {"service": "orchestrator", "level": "info", "message": "workflow run requested"}
            ],
        },
    }
    bodies = sorted((hit.path, hit.body) for hit in served.stub.hits)
    assert bodies == [
        ("/reports/generate", b'{"kind":"summary","format":"json"}'),
        ("/reports/log_analysis", b'{"format":"json","limit":1}'),
    ]
    bad = await served.http.post("/demo/e2e", json={"format": "xml"}, headers=headers)
    assert bad.status_code == 400 and _violations(bad) == ["format"]
    bad = await served.http.post("/demo/e2e", json={"log_limit": 5000}, headers=headers)
    assert bad.status_code == 400 and _violations(bad) == ["log_limit"]


async def test_demo_answer_of_another_shape_is_502_naming_the_member(
    served: Served, tenant: str
) -> None:
    headers = await served.headers(tenant)
    served.stub.answer(
        "/reports/log_analysis", Reply(json={**LOG_ANALYSIS, "overview": {"count": "12"}})
    )
    response = await served.http.post("/demo/e2e", json={}, headers=headers)
    assert response.status_code == 502
    code, message, info = _error(response)
    assert (code, info["reason"]) == ("UNKNOWN", "UPSTREAM_GARBAGE")
    assert "overview.count" in message


# --- failures ----------------------------------------------------------------------------


async def test_upstream_error_status_is_502_naming_it_and_a_post_is_not_retried(
    served: Served, tenant: str
) -> None:
    headers = await served.headers(tenant)
    served.stub.answer("/reports/generate", Reply(status=503, json={"error": "down"}))
    response = await served.http.post("/report/request", json={"kind": "generate"}, headers=headers)
    assert response.status_code == 502
    code, message, info = _error(response)
    assert code == "UNKNOWN"
    assert info == {"reason": "UPSTREAM_STATUS", "upstream": "reporting", "upstreamStatus": "503"}
    assert message == (
        "POST /reports/generate of the reporting service (REPORTING_URL) answered HTTP 503"
    )
    assert len(served.stub.hits) == 1  # generate is not idempotent: one attempt


async def test_idempotent_calls_are_retried_exactly(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    path = "/reports/life-of-ticket"
    served.stub.answer(path, Reply(status=503, times=2), Reply(json={"stage": "done"}))
    started = time.monotonic()
    response = await served.http.post(
        "/report/request", json={"kind": "life_of_ticket"}, headers=headers
    )
    assert response.status_code == 200 and response.json() == {"stage": "done"}
    assert len(served.stub.hits_of(path)) == 3
    assert time.monotonic() - started >= 0.1 + 0.2  # two backoff waits (0.1 s, 0.2 s)
    served.stub.reset()
    served.stub.answer(path, Reply(status=502))
    failed = await served.http.post(
        "/report/request", json={"kind": "life_of_ticket"}, headers=headers
    )
    assert failed.status_code == 502 and _error(failed)[2]["upstreamStatus"] == "502"
    assert len(served.stub.hits_of(path)) == 3  # 1 + UPSTREAM_RETRIES
    served.stub.reset()
    served.stub.answer(path, Reply(status=404))
    missing = await served.http.post(
        "/report/request", json={"kind": "life_of_ticket"}, headers=headers
    )
    assert missing.status_code == 502 and _error(missing)[2]["upstreamStatus"] == "404"
    assert len(served.stub.hits_of(path)) == 1  # a 4xx is not retried


async def test_garbage_is_502(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    served.stub.answer(
        "/reports/generate", Reply(body=b"<html>oops</html>", content_type="text/html")
    )
    response = await served.http.post("/report/request", json={"kind": "generate"}, headers=headers)
    assert response.status_code == 502
    _, message, info = _error(response)
    assert info["reason"] == "UPSTREAM_GARBAGE"
    assert message.endswith("answered HTTP 200 with a body that is not JSON (17 bytes)")


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


async def test_json_that_cannot_be_passed_on_is_502(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    for body, problem in (
        (_nested(33), "nested deeper than 32 levels"),
        (b'{"n": 1' + b"0" * 400 + b"}", "an integer beyond the range of a double"),
        (b'{"s": "\\ud800"}', "a string with a lone surrogate (not UTF-8)"),
        (b'{"n": NaN}', None),
    ):
        served.stub.answer("/reports/generate", Reply(body=body))
        response = await served.http.post(
            "/report/request", json={"kind": "generate"}, headers=headers
        )
        assert response.status_code == 502, body
        _, message, info = _error(response)
        assert info["reason"] == "UPSTREAM_GARBAGE"
        if problem is None:
            assert "not JSON" in message
        else:
            assert message.endswith(f"answered JSON this server cannot pass on: {problem}")
    served.stub.answer("/reports/generate", Reply(body=_nested(32)))
    deep = await served.http.post("/report/request", json={"kind": "generate"}, headers=headers)
    assert deep.status_code == 200 and deep.content == _nested(32)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.app.grpc_port}") as channel:
        proxies = upstream_proxy_service_pb2_grpc.UpstreamProxyServiceStub(channel)
        answer = await proxies.RequestReport(  # a gRPC client decodes the deepest answer
            upstream_proxy_service_pb2.RequestReportRequest(kind="generate"),
            metadata=[(name.lower(), value) for name, value in headers.items()],
        )
    assert answer.result.struct_value.fields["a"].HasField("struct_value")


async def test_bodies_over_the_cap_are_502_naming_it(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant)
    for reply, what in (
        (Reply(chunks=200), f"sent more than {CAP} bytes"),  # streamed: 200 KiB offered
        (Reply(body=b"[" + b"1," * CAP + b"1]"), f"declared {2 * CAP + 3} bytes"),
    ):
        served.stub.answer("/reports/generate", reply)
        response = await served.http.post(
            "/report/request", json={"kind": "generate"}, headers=headers
        )
        assert response.status_code == 502
        _, message, info = _error(response)
        assert info["reason"] == "UPSTREAM_TOO_LARGE" and info["maxBytes"] == str(CAP)
        assert message.endswith(
            f"answered a body over the {CAP}-byte cap (UPSTREAM_MAX_BODY_BYTES): {what}"
        )


async def test_hanging_upstream_is_504_and_blocks_nobody(served: Served, tenant: str) -> None:
    headers = await served.headers(tenant, **{"X-Stella-Operator-Reason": "hang"})
    served.stub.answer("/documents", Reply(hang=True))
    started = time.monotonic()
    hanging = asyncio.create_task(
        served.http.post("/docstore/save", json={"a": 1}, headers=headers)
    )
    await asyncio.sleep(0.2)
    quick_started = time.monotonic()
    quick = await served.http.post(
        "/report/request", json={"kind": "pr_confidence"}, headers=headers
    )
    quick_took = time.monotonic() - quick_started
    response = await hanging
    took = time.monotonic() - started
    assert quick.status_code == 200 and quick_took < 0.5
    assert response.status_code == 504
    code, message, info = _error(response)
    assert (code, info["reason"]) == ("DEADLINE_EXCEEDED", "UPSTREAM_TIMEOUT")
    assert message == (
        "POST /documents of the docstore service (DOC_STORE_URL) did not answer in time "
        "(connect timeout 0.5 s, read timeout 0.5 s)"
    )
    assert 0.45 < took < 1.5  # one attempt (a save is not retried): the read timeout
    assert len(served.stub.hits_of("/documents")) == 1


# --- notification delivery ---------------------------------------------------------------


async def _enqueue_notification(
    served: Served, tenant: str, payload: dict[str, Any], max_attempts: int, trace: str = ""
) -> str:
    extra = {"X-Stella-Operator-Reason": "t", **({"X-Stella-Trace-Id": trace} if trace else {})}
    headers = await served.headers(tenant, **extra)
    source = await served.http.post(
        "/jobengine/sources", json={"name": "notify", "sourceType": "manual"}, headers=headers
    )
    assert source.status_code == 201, source.text
    job = await served.http.post(
        "/jobengine/jobs",
        json={
            "jobType": "notify.consolidation",
            "sourceId": source.json()["sourceId"],
            "payload": payload,
            "maxAttempts": max_attempts,
            "backoff": {"initialDelay": "0.1s", "maxDelay": "0.2s", "multiplier": 2},
        },
        headers=headers,
    )
    assert job.status_code == 201, job.text
    return str(job.json()["jobId"])


async def _job_when(served: Served, tenant: str, job_id: str, statuses: set[str]) -> dict[str, Any]:
    headers = await served.headers(tenant)
    deadline = time.monotonic() + 15
    while True:
        answer = await served.http.get(f"/jobengine/jobs/{job_id}", headers=headers)
        found = answer.json()["job"]
        if found["status"] in statuses or time.monotonic() > deadline:
            return dict(found)
        await asyncio.sleep(0.1)


async def test_notification_jobs_are_posted_and_completed(served: Served, tenant: str) -> None:
    trace = uuid.uuid4().hex
    payload: dict[str, Any] = {
        "scope": "confluence",
        "document_ids": ["d1", "d2"],
        "message": "",
        "channels": ["email"],
        "correlation_id": "c-1",
        "n": 7,
    }
    job_id = await _enqueue_notification(served, tenant, payload, 3, trace=trace)
    job = await _job_when(served, tenant, job_id, {"succeeded", "dead_lettered"})
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert job["result"] == {"delivered": True}
    [hit] = [h for h in served.stub.hits_of("/notify") if h.headers["idempotency-key"] == job_id]
    assert hit.json() == payload
    assert hit.headers["x-stella-trace-id"] == trace  # the enqueuing call's
    assert hit.headers["traceparent"].startswith(f"00-{trace}-")
    assert hit.headers["x-stella-tenant"] == tenant


async def test_post_jobs_notify_consolidation_reaches_the_notification_service(
    served: Served, tenant: str
) -> None:
    """End to end: the mesh endpoint enqueues, the server delivers the stored payload."""
    trace = uuid.uuid4().hex
    headers = await served.headers(
        tenant, **{"X-Stella-Operator-Reason": "notify", "X-Stella-Trace-Id": trace}
    )
    accepted = await served.http.post(
        "/jobs/notify-consolidation",
        json={"scope": "confluence", "document_ids": ["d1"], "channels": ["email"]},
        headers=headers,
    )
    assert accepted.status_code in (200, 201, 202), accepted.text
    job_id = accepted.json()["job_id"]
    job = await _job_when(served, tenant, job_id, {"succeeded", "dead_lettered"})
    assert job["status"] == "succeeded" and job["attempts"] == 1
    [hit] = [h for h in served.stub.hits_of("/notify") if h.headers["idempotency-key"] == job_id]
    assert hit.json() == job["payload"]
    assert hit.json()["scope"] == "confluence"
    assert hit.headers["x-stella-trace-id"] == trace
    assert hit.headers["traceparent"].startswith(f"00-{trace}-")


async def test_failing_notifications_are_retried_then_dead_lettered(
    served: Served, tenant: str
) -> None:
    served.stub.answer("/notify", Reply(status=500, json={"error": "smtp down"}))
    job_id = await _enqueue_notification(served, tenant, {"event": "consolidation"}, 2)
    job = await _job_when(served, tenant, job_id, {"succeeded", "dead_lettered"})
    assert job["status"] == "dead_lettered" and job["attempts"] == 2
    error = job["lastError"]
    assert (error["category"], error["code"], error["retryable"]) == (
        "upstream",
        "UPSTREAM_STATUS",
        True,
    )
    assert "answered HTTP 500" in error["message"]
    hits = [h for h in served.stub.hits_of("/notify") if h.headers["idempotency-key"] == job_id]
    assert len(hits) == 2  # one POST per attempt, none retried inside an attempt


async def test_an_open_breaker_pauses_notification_delivery(
    tmp_path: Path, stub: StubUpstream
) -> None:
    """Two failed attempts open the notification breaker (threshold 2, reset 1 s): the
    job waits, its attempts unspent, until the breaker lets a trial through."""
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}").model_copy(
        update={
            "notification_url": stub.url,
            "upstream_breaker_failures": 2,
            "upstream_breaker_reset_seconds": 1.0,
            "notify_poll_seconds": 0.05,
        }
    )
    app = Application(settings)
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            served = Served(app, http, stub, TokenFactory(app, base))
            tenant = f"t-{uuid.uuid4().hex[:10]}"
            stub.answer("/notify", Reply(status=503, times=2))
            job_id = await _enqueue_notification(served, tenant, {"event": "consolidation"}, 5)
            job = await _job_when(served, tenant, job_id, {"succeeded", "dead_lettered"})
    finally:
        await app.stop(grace=1)
    assert job["status"] == "succeeded" and job["attempts"] == 3
    first, second, third = stub.hits_of("/notify")
    assert second.at - first.at < 0.9  # the job's own backoff (0.1 s)
    assert third.at - second.at >= 0.9  # the breaker's reset time: nothing leased meanwhile


# --- configuration -----------------------------------------------------------------------


async def test_health_system_checks_every_upstream(served: Served, tenant: str) -> None:
    admin = await served.tokens.token(None, ("orch:admin",))
    response = await served.http.get("/health/system", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200, response.text
    services = [
        (d["name"], d["target"], d["status"])
        for d in response.json()["dependencies"]
        if d["kind"] == "service"
    ]
    health = served.stub.url + "/health"
    assert services == [
        ("REPORTING_URL", health, "up"),
        ("DOC_STORE_URL", health, "up"),
        ("SECURE_ANALYZER_URL", health, "up"),
        ("NOTIFICATION_URL", health, "up"),
    ]


def test_effective_config_hides_upstream_credentials() -> None:
    settings = Settings(
        doc_store_url="https://svc:s3cret@docs.example/api",
        notification_url="http://notify.example:5095",
    )
    shown = {entry.name: entry for entry in effective_config(settings, {})}
    assert shown["DOC_STORE_URL"].value == "https://**redacted**@docs.example/api"
    assert shown["DOC_STORE_URL"].redacted is True
    assert shown["NOTIFICATION_URL"].value == "http://notify.example:5095"
    assert shown["SECURE_ANALYZER_URL"].value is None
    assert shown["UPSTREAM_MAX_BODY_BYTES"].value == 4 * 1024 * 1024


# --- not configured, and the breaker -----------------------------------------------------


async def test_unset_upstreams_are_503_and_the_breaker_opens_and_recovers(
    tmp_path: Path, stub: StubUpstream
) -> None:
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}").model_copy(
        update={
            "reporting_url": stub.url,
            "upstream_breaker_failures": 3,
            "upstream_breaker_reset_seconds": 1.0,
            "upstream_retries": 0,
        }
    )
    app = Application(settings)
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        tenant = f"t-{uuid.uuid4().hex[:10]}"
        token = await TokenFactory(app, base).token(tenant)
        headers = {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            unset = await http.post(
                "/docstore/save", json={"a": 1}, headers={"X-Stella-Operator-Reason": "r"}
            )
            assert unset.status_code == 503
            assert _error(unset) == (
                "UNAVAILABLE",
                "DOC_STORE_URL is not set: the docstore service is not configured",
                {
                    "reason": "UPSTREAM_NOT_CONFIGURED",
                    "setting": "DOC_STORE_URL",
                    "upstream": "docstore",
                },
            )
            unset = await http.post("/summarization/suggest", json={"content": "x"})
            assert unset.status_code == 503 and "SECURE_ANALYZER_URL is not set" in unset.text
            assert stub.hits == []

            stub.answer("/reports/generate", Reply(status=500))
            for _ in range(3):
                failed = await http.post("/report/request", json={"kind": "generate"})
                assert failed.status_code == 502
            opened = await http.post("/report/request", json={"kind": "generate"})
            assert opened.status_code == 503
            assert opened.headers["retry-after"] == "1"
            code, message, info = _error(opened)
            assert (code, info["reason"]) == ("UNAVAILABLE", "CIRCUIT_OPEN")
            assert message == (
                "the circuit to the reporting service is open after 3 consecutive failures; "
                "retry in 1 s"
            )
            retry = next(d for d in opened.json()["details"] if d["@type"].endswith("RetryInfo"))
            assert 0 < float(retry["retryDelay"].removesuffix("s")) <= 1.0
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
                proxies = upstream_proxy_service_pb2_grpc.UpstreamProxyServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await proxies.RequestReport(
                        upstream_proxy_service_pb2.RequestReportRequest(kind="generate"),
                        metadata=(
                            ("authorization", f"Bearer {token}"),
                            ("x-stella-tenant", tenant),
                        ),
                    )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert dict(refused.value.trailing_metadata() or ())["retry-after"] == "1"
            assert len(stub.hits) == 3  # the open circuit sent nothing

            stub.reset()  # the upstream recovers
            await asyncio.sleep(1.1)
            trial = await http.post("/report/request", json={"kind": "generate"})
            assert trial.status_code == 200  # half-open: the trial call went through
            again = await http.post("/report/request", json={"kind": "generate"})
            assert again.status_code == 200  # closed again
            assert len(stub.hits) == 2
    finally:
        await app.stop(grace=1)
