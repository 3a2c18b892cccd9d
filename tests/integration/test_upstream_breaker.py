"""The upstream circuit breaker counts calls, not attempts (issue 13 critic, item 10).

Fault: each retry attempt of an idempotent call was one breaker outcome, so with
UPSTREAM_BREAKER_FAILURES 2 and UPSTREAM_RETRIES 2 the first call's second attempt
opened the breaker and its third attempt answered 503 CIRCUIT_OPEN: the call that
tripped the breaker reported the breaker instead of its own failure (502
UPSTREAM_UNREACHABLE). Now one call is one outcome, taken after its retries: the
calls that fail answer their failure with every attempt made, and only the call after
the threshold answers CIRCUIT_OPEN, sending nothing. A call that succeeds on a later
attempt resets the count; a 500 is answered at once, never retried (a 502/503/504 is).

A real server, a real HTTP stub (tests/support/stub_upstream.py) and, for the
unreachable case, a loopback port nobody listens on.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from server.app import Application
from tests.conftest import settings_for
from tests.support.auth import TokenFactory
from tests.support.stub_upstream import Reply, StubUpstream, stub_upstream

LIFE = "/reports/life-of-ticket"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _error(response: httpx.Response) -> tuple[int, str, str, dict[str, str]]:
    """(status, code, message, ErrorInfo reason + metadata)."""
    body = response.json()
    info = next(d for d in body["details"] if d["@type"].endswith("ErrorInfo"))
    reason = {"reason": info["reason"], **info.get("metadata", {})}
    return response.status_code, body["code"], body["error"], reason


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[StubUpstream]:
    async with stub_upstream() as running:
        yield running


@pytest.fixture
async def http(tmp_path: Path, stub: StubUpstream) -> AsyncIterator[httpx.AsyncClient]:
    stub.reset()
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}").model_copy(
        update={
            "reporting_url": stub.url,
            "secure_analyzer_url": f"http://127.0.0.1:{_closed_port()}",
            # No test here waits for a timeout (the unreachable port refuses at once), so
            # the attempts get time to spare: with 0.5 s, a first attempt slowed by a
            # loaded CI machine timed out and the later 503s were the call's answer.
            "upstream_connect_timeout_seconds": 5.0,
            "upstream_read_timeout_seconds": 5.0,
            "upstream_retries": 2,
            "upstream_breaker_failures": 2,
            "upstream_breaker_reset_seconds": 30.0,
        }
    )
    app = Application(settings)
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        tenant = f"t-{uuid.uuid4().hex[:10]}"
        token = await TokenFactory(app, base).token(tenant)
        headers = {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            yield client
    finally:
        await app.stop(grace=1)


async def test_the_call_that_opens_the_breaker_answers_its_own_failure(
    http: httpx.AsyncClient,
) -> None:
    unreachable = (
        502,
        "UNKNOWN",
        "POST /suggest of the analyzer service (SECURE_ANALYZER_URL) could not be reached: "
        "ConnectError",
        {"reason": "UPSTREAM_UNREACHABLE", "upstream": "analyzer"},
    )
    for _ in range(2):  # each call: three attempts, one breaker failure
        response = await http.post("/summarization/suggest", json={"content": "x"})
        assert _error(response) == unreachable
    opened = await http.post("/summarization/suggest", json={"content": "x"})
    status, code, message, info = _error(opened)
    assert (status, code, info["reason"]) == (503, "UNAVAILABLE", "CIRCUIT_OPEN")
    assert message.startswith(
        "the circuit to the analyzer service is open after 2 consecutive failures; retry in "
    )
    assert opened.headers["retry-after"] in {"29", "30"}


async def test_every_attempt_is_made_and_a_later_success_resets_the_count(
    http: httpx.AsyncClient, stub: StubUpstream
) -> None:
    body = {"kind": "life_of_ticket"}
    # A call that fails twice and then succeeds: one success, the count stays at 0.
    stub.answer(LIFE, Reply(status=503, times=2), Reply(json={"stage": "done"}))
    assert (await http.post("/report/request", json=body)).json() == {"stage": "done"}
    assert len(stub.hits_of(LIFE)) == 3
    stub.reset()
    stub.answer(LIFE, Reply(status=504))
    for calls in (1, 2):
        failed = await http.post("/report/request", json=body)
        assert _error(failed)[0] == 502 and _error(failed)[3]["upstreamStatus"] == "504"
        assert len(stub.hits_of(LIFE)) == 3 * calls  # every attempt made, no 503 midway
    opened = await http.post("/report/request", json=body)
    assert _error(opened)[3]["reason"] == "CIRCUIT_OPEN"
    assert len(stub.hits_of(LIFE)) == 6  # the open circuit sent nothing


async def test_a_500_is_answered_at_once_not_retried(
    http: httpx.AsyncClient, stub: StubUpstream
) -> None:
    stub.answer(LIFE, Reply(status=500, times=1), Reply(json={"stage": "done"}))
    failed = await http.post("/report/request", json={"kind": "life_of_ticket"})
    assert _error(failed) == (
        502,
        "UNKNOWN",
        "POST /reports/life-of-ticket of the reporting service (REPORTING_URL) answered HTTP 500",
        {"reason": "UPSTREAM_STATUS", "upstream": "reporting", "upstreamStatus": "500"},
    )
    assert len(stub.hits_of(LIFE)) == 1


async def test_openapi_lists_the_upstream_failures_of_every_proxy_operation(
    http: httpx.AsyncClient,
) -> None:
    """502 (the upstream failed: gRPC UNKNOWN), 503 (not configured, circuit open) and
    504 (the upstream's timeout: DEADLINE_EXCEEDED) are documented on each of the four
    operations, from the service's error_status options the gateway reads."""
    document = (await http.get("/openapi.json")).json()
    for path in ("/docstore/save", "/report/request", "/summarization/suggest", "/demo/e2e"):
        responses = document["paths"][path]["post"]["responses"]
        assert {"502", "503", "504"} <= set(responses), (path, sorted(responses))
        timeout = responses["504"]
        if "$ref" in timeout:
            timeout = document["components"]["responses"][timeout["$ref"].rsplit("/", 1)[1]]
        assert timeout["description"] == "Gateway Timeout"
