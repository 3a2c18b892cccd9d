"""The dead-letter and Orchestra gauges of /metrics (issue 12 point 3;
server/observability/product_gauges.py), on SQLite and PostgreSQL: exact values for a
fresh tenant after known rows were made through the real API, read over HTTP.

- dead-letter entries waiting for an operator, and the retryable ones, by tenant and
  category, from the cluster counters; a replay takes the entry out of both;
- running Orchestra instances by tenant, from the live tokens: an instance parked on
  two user tasks counts once, one that completed counts no more, and the gauge agrees
  with the instances table.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from clients.base import CallerHeaders
from clients.jobs import JobsClient
from clients.sources import SourcesClient
from clients.transports.grpc import GrpcTransport
from orchestrator.jobengine.v1 import worker_service_pb2 as pb
from server.app import Application
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.observability.product_gauges import (
    DEADLETTER_PENDING,
    DEADLETTER_RETRYABLE,
    ORCHESTRA_INSTANCES,
)
from server.storage.tables import OrchestraInstanceRow, table_of
from tests.integration.test_ops import samples, scrape
from tests.integration.test_workers import Harness, WorkerCalls
from tests.support.auth import TokenFactory
from tests.support.orchestra import load_definition

_instances = table_of(OrchestraInstanceRow)
UP = "orchestrator_domain_gauge_up"


def _gauges(text: str, name: str, tenant: str) -> dict[str, float]:
    """The samples of `name` for `tenant`, by their other label's value."""
    found = {}
    for (sample_name, labels), value in samples(text).items():
        values = dict(labels)
        if sample_name == name and values.pop("tenant", None) == tenant:
            ((_, other),) = values.items()
            found[other] = value
    return found


async def _metrics(app: Application, http: httpx.AsyncClient) -> str:
    app.gauges.invalidate()  # read now, not the reading cached up to 5 s ago
    return await scrape(http)


@pytest.fixture
async def harness(
    app: Application, grpc_target: str, tenant: str, access_token: str
) -> AsyncIterator[Harness]:
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, access_token=access_token, operator_reason="gauges")
    try:
        source = await SourcesClient(transport, headers).register_source("feed", "manual")
        yield Harness(
            app=app,
            workers=WorkerCalls(transport, headers),
            jobs=JobsClient(transport, headers),
            source_id=source.source_id,
            tenant=tenant,
        )
    finally:
        await transport.close()


async def _dead_letter(harness: Harness, category: str, code: str, retryable: bool) -> None:
    """One job of one attempt, leased and failed for good over gRPC."""
    (job,) = await harness.enqueue("scan.image", max_attempts=1)
    (lease,) = await harness.workers.lease(["scan.image"])
    assert lease.job.job_id == job.job_id
    (outcome,) = await harness.workers.fail(
        pb.JobFailure(
            token=lease.token,
            category=category,
            code=code,
            message=f"{code} on {job.job_id}",
            retryable=retryable,
        )
    )
    assert outcome.job_status == "dead_lettered"


async def test_deadletter_gauges_count_pending_and_retryable_entries(
    app: Application,
    http: httpx.AsyncClient,
    harness: Harness,
    tenant: str,
    auth_headers: dict[str, str],
    tokens: TokenFactory,
) -> None:
    assert _gauges(await _metrics(app, http), DEADLETTER_PENDING, tenant) == {}
    await _dead_letter(harness, "timeout", "DEADLINE", True)
    await _dead_letter(harness, "timeout", "DEADLINE", True)
    await _dead_letter(harness, "timeout", "SOCKET", False)
    await _dead_letter(harness, "validation", "SCHEMA", False)

    text = await _metrics(app, http)
    assert _gauges(text, DEADLETTER_PENDING, tenant) == {"timeout": 3, "validation": 1}
    assert _gauges(text, DEADLETTER_RETRYABLE, tenant) == {"timeout": 2, "validation": 0}
    for name in (DEADLETTER_PENDING, DEADLETTER_RETRYABLE, ORCHESTRA_INSTANCES):
        assert samples(text)[(UP, frozenset({("gauge", name)}))] == 1

    listed = await http.get(
        "/jobengine/deadletter", params={"category": "timeout"}, headers=auth_headers
    )
    assert listed.status_code == 200, listed.text
    retryable_entry = next(e for e in listed.json()["items"] if e["retryable"])
    backfill = await tokens.token(tenant, ("orch:backfill",), backfill_reason="gauges")
    replayed = await http.post(
        f"/jobengine/deadletter/{retryable_entry['entryId']}/replay",
        json={},
        headers={
            "Authorization": f"Bearer {backfill}",
            "X-Stella-Tenant": tenant,
            "X-Stella-Operator-Reason": "gauges",
        },
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed"] == 1

    text = await _metrics(app, http)
    # The category stays, at 0 once nothing waits in it (an alert's series never vanishes).
    assert _gauges(text, DEADLETTER_PENDING, tenant) == {"timeout": 2, "validation": 1}
    assert _gauges(text, DEADLETTER_RETRYABLE, tenant) == {"timeout": 1, "validation": 0}


def _approval(definition_id: str) -> dict[str, Any]:
    return {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "review", "type": "user_task"},
            {"id": "done", "type": "end"},
        ],
        "flows": [{"from": "start", "to": "review"}, {"from": "review", "to": "done"}],
    }


def _two_reviews(definition_id: str) -> dict[str, Any]:
    """A fork into two user tasks, joined: two parked tokens for one instance."""
    return {
        "id": definition_id,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "fork", "type": "parallel_gateway"},
            {"id": "legal", "type": "user_task"},
            {"id": "finance", "type": "user_task"},
            {"id": "join", "type": "parallel_gateway"},
            {"id": "done", "type": "end"},
        ],
        "flows": [
            {"from": "start", "to": "fork"},
            {"from": "fork", "to": "legal"},
            {"from": "fork", "to": "finance"},
            {"from": "legal", "to": "join"},
            {"from": "finance", "to": "join"},
            {"from": "join", "to": "done"},
        ],
    }


async def _start(http: httpx.AsyncClient, headers: dict[str, str], definition_id: str) -> str:
    response = await http.post(
        f"/orchestra-api/process/{definition_id}/start", json={}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["instance_id"])


async def _running_rows(app: Application, tenant: str) -> int:
    async with app.db.read() as conn:
        statement = (
            sa.select(sa.func.count())
            .select_from(_instances)
            .where(_instances.c.tenant_id == tenant, _instances.c.status == "running")
        )
        return int((await conn.execute(statement)).scalar_one())


async def test_orchestra_instances_gauge_counts_running_instances(
    app: Application, http: httpx.AsyncClient, tenant: str, tokens: TokenFactory
) -> None:
    suffix = uuid.uuid4().hex[:8]
    approval, reviews = f"approve_{suffix}", f"reviews_{suffix}"
    await load_definition(app, _approval(approval))
    await load_definition(app, _two_reviews(reviews))
    token = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    consumer = {"Authorization": f"Bearer {token}"}
    assert _gauges(await _metrics(app, http), ORCHESTRA_INSTANCES, tenant) == {}

    first = await _start(http, consumer, approval)
    await _start(http, consumer, approval)
    forked = await _start(http, consumer, reviews)
    state = (await http.get(f"/orchestra-api/instance/{forked}", headers=consumer)).json()
    assert sorted(t["status"] for t in state["tokens"]) == ["parked", "parked"]
    assert _gauges(await _metrics(app, http), ORCHESTRA_INSTANCES, tenant) == {"running": 3}
    assert await _running_rows(app, tenant) == 3

    state = (await http.get(f"/orchestra-api/instance/{first}", headers=consumer)).json()
    (parked,) = state["tokens"]
    signalled = await http.post(f"/orchestra-api/token/{parked['id']}/signal", headers=consumer)
    assert signalled.status_code == 200, signalled.text
    state = (await http.get(f"/orchestra-api/instance/{first}", headers=consumer)).json()
    assert state["status"] == "completed"

    text = await _metrics(app, http)
    assert _gauges(text, ORCHESTRA_INSTANCES, tenant) == {"running": 2}
    assert await _running_rows(app, tenant) == 2
    assert samples(text)[(UP, frozenset({("gauge", ORCHESTRA_INSTANCES)}))] == 1
