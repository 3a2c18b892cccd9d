"""A workflow run is one trace (critic finding 4 on issue 13 point 4): POST /workflows/run
answers {runId, traceId}; every later engine step (job endings, the join, the
analysis job), the jobs they enqueue, and those jobs' transitions (lease over gRPC,
completion) are in that trace: their events carry the run's trace id and their spans
hang under the run call's span, the worker's calls only linked. So are a timer's
firing and a saga's compensation. On the session's real server (SQLite file and
PostgreSQL), a worker leasing over real gRPC."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from clients.base import CallerHeaders
from clients.transports.grpc import GrpcTransport
from server.app import Application
from server.domain.orchestra.records import INSTANCE
from server.identity.scopes import ORCHESTRA_PERMISSION
from server.interceptors.tracing import TRACE_HEADER
from tests.integration.test_orchestra_engine import Orchestra, Worker
from tests.integration.test_tracing import TRACE_PATH, _admin_client, _walk
from tests.integration.test_workflows import (
    OPERATE,
    RUN,
    SHIPPED_TYPES,
    _events,
    _instances,
    _jobs,
    _work_until_idle,
    operator,
    rows,
)
from tests.support.auth import TokenFactory
from tests.support.orchestra import load_definition


async def _completed(app: Application, run_id: str) -> Any:
    for _ in range(200):
        [row] = await rows(app, sa.select(_instances).where(_instances.c.instance_id == run_id))
        if row.status == "completed":
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} is {row.status}")


async def test_a_workflow_run_with_its_later_steps_and_jobs_is_one_trace(
    app: Application,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    tenant: str,
    grpc_target: str,
    http_base: str,
) -> None:
    trace = f"order-{uuid.uuid4().hex[:8]}"  # a token, not a W3C id: hashed for spans
    hashed = hashlib.blake2b(trace.encode(), digest_size=16).hexdigest()
    headers = await operator(tokens, tenant, **{TRACE_HEADER: trace})
    response = await http.post(RUN, json={"variables": {"scope": "acme"}}, headers=headers)
    assert response.status_code == 202, response.text
    run_id = response.json()["runId"]
    assert response.json() == {"runId": run_id, "traceId": trace}

    worker = await tokens.token(tenant, OPERATE)
    done = await _work_until_idle(grpc_target, worker, SHIPPED_TYPES, 5)
    assert len(done) == 5
    instance = await _completed(app, run_id)
    assert instance.trace_id == trace
    assert instance.trace_parent.startswith(f"00-{hashed}-")

    # Events: the instance's (start, the four job endings, the join, completion) and
    # every job's (enqueued, leased, succeeded) carry the run's trace id.
    instance_events = await rows(
        app, sa.select(_events).where(_events.c.subject == INSTANCE.name(run_id))
    )
    assert len(instance_events) > 10
    assert {event.trace_id for event in instance_events} == {trace}
    assert [e.type for e in instance_events].count("orchestra.token.job_ended") == 5
    jobs = await rows(app, sa.select(_jobs).where(_jobs.c.tenant_id == tenant))
    assert sorted(job.job_type for job in jobs) == sorted(SHIPPED_TYPES)
    assert {job.trace_id for job in jobs} == {trace}
    assert {job.trace_parent[3:35] for job in jobs} == {hashed}
    for job in jobs:
        history = await rows(
            app,
            sa.select(_events.c.type, _events.c.trace_id)
            .where(_events.c.subject == f"jobs/{job.job_id}")
            .order_by(_events.c.event_id),
        )
        assert [tuple(event) for event in history] == [
            ("job.enqueued", trace),
            ("job.leased", trace),
            ("job.succeeded", trace),
        ], job.job_type

    # Spans: one tree under the run call's SERVER span, looked up by the answered id.
    async with _admin_client(tokens, http_base) as admin:
        found = await admin.get(TRACE_PATH + trace)
    assert found.status_code == 200, found.text
    assert found.json()["traceId"] == hashed
    (root,) = found.json()["spans"]
    assert (root["kind"], root["attributes"]["stella.trace_id"]) == ("SERVER", trace)
    assert root["attributes"]["http.route"] == RUN
    spans = list(_walk([root]))
    names = [span["name"] for span in spans]
    # The start step, one per job ending (three rest at the join, the fourth passes it
    # and enqueues the analysis job, whose ending completes the run).
    assert names.count("orchestra.step") == 6
    assert names.count("job.enqueue") == 2
    assert names.count("job.lease") == names.count("job.complete") == 5
    steps = [span for span in spans if span["name"] == "orchestra.step"]
    assert {step["parentSpanId"] for step in steps} == {root["spanId"]}
    assert {step["attributes"]["orchestra.instance_id"] for step in steps} == {run_id}
    by_id = {span["spanId"]: span for span in spans}
    for span in spans:
        if span["name"] in ("job.lease", "job.complete"):
            assert by_id[span["parentSpanId"]]["name"] == "job.enqueue"
            (link,) = span["links"]  # the worker's call, in its own trace
            assert link["traceId"] != hashed
        if span["name"] == "job.enqueue":
            assert by_id[span["parentSpanId"]]["name"] == "orchestra.step"
    analysis = [
        span
        for span in spans
        if span["name"] == "job.enqueue"
        and span["attributes"].get("job.type") == "analysis.consistency"
    ]
    assert len(analysis) == 1


async def test_timer_steps_and_a_sagas_compensation_stay_in_the_start_calls_trace(
    app: Application, grpc_target: str, tokens: TokenFactory, tenant: str, http_base: str
) -> None:
    """start -> timer -> reserve (compensation unreserve) -> charge -> end, started over
    gRPC with a W3C trace id: the timer's step, the reserve job's ending, the failed
    charge (an incident: the saga compensates) and the compensation's job and ending
    are all in that trace."""
    suffix = uuid.uuid4().hex[:6]
    reserve, unreserve, charge = (f"{name}.{suffix}" for name in ("reserve", "unreserve", "charge"))
    definition_id = f"traced_saga_{suffix}"
    await load_definition(
        app,
        {
            "id": definition_id,
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "cool_off", "type": "timer", "duration": "PT0.2S"},
                {
                    "id": "reserve",
                    "type": "service_task",
                    "job_type": reserve,
                    "compensation": unreserve,
                },
                {"id": "charge", "type": "service_task", "job_type": charge},
                {"id": "done", "type": "end"},
            ],
            "flows": [
                {"from": "start", "to": "cool_off"},
                {"from": "cool_off", "to": "reserve"},
                {"from": "reserve", "to": "charge"},
                {"from": "charge", "to": "done"},
            ],
        },
    )
    trace = uuid.uuid4().hex
    starter = await tokens.token(tenant, permissions=[ORCHESTRA_PERMISSION])
    orchestra = Orchestra(
        GrpcTransport(grpc_target), CallerHeaders(access_token=starter, trace_id=trace)
    )
    worker = Worker(
        GrpcTransport(grpc_target), CallerHeaders(access_token=await tokens.token(tenant))
    )
    instance_id = await orchestra.start(definition_id, {"order": 7})
    [reserved] = await worker.lease(reserve)  # after the timer fired (the server's loop)
    await worker.complete(reserved.token, {"reservation": "r-1"})
    [charged] = await worker.lease(charge)
    await worker.fail(charged.token)  # dead-lettered: the saga compensates
    [undo] = await worker.lease(unreserve)
    await worker.complete(undo.token, {})
    assert (await orchestra.wait(instance_id, "compensated")).status == "compensated"

    instance_events = await rows(
        app, sa.select(_events).where(_events.c.subject == INSTANCE.name(instance_id))
    )
    kinds = [event.type for event in instance_events]
    assert {"orchestra.token.timer_fired", "orchestra.compensation.completed"} <= set(kinds)
    assert {event.trace_id for event in instance_events} == {trace}
    jobs = await rows(app, sa.select(_jobs).where(_jobs.c.tenant_id == tenant))
    assert sorted(job.job_type for job in jobs) == sorted([reserve, charge, unreserve])
    assert {job.trace_id for job in jobs} == {trace}
    job_events = await rows(
        app,
        sa.select(_events.c.type, _events.c.trace_id).where(
            _events.c.subject.in_([f"jobs/{job.job_id}" for job in jobs])
        ),
    )
    assert len(job_events) == 9  # 3 x (enqueued, leased, succeeded or dead-lettered)
    assert {event.trace_id for event in job_events} == {trace}

    async with _admin_client(tokens, http_base) as admin:
        found = (await admin.get(TRACE_PATH + trace)).json()
    # Roots: the start call's span, and the GetInstance polls that sent the same id.
    root, *polls = found["spans"]
    assert root["name"] == "orchestrator.orchestra.v1.OrchestraService/StartProcess"
    assert {poll["name"] for poll in polls} == {
        "orchestrator.orchestra.v1.OrchestraService/GetInstance"
    }
    assert not any(poll.get("children") for poll in polls)
    names = [span["name"] for span in _walk([root])]
    # Steps: the start, the timer firing, the reserve job's ending (the charge job's
    # dead letter is an incident: the saga begins without a step).
    assert names.count("orchestra.step") == 3
    assert names.count("job.enqueue") == 3  # reserve, charge, unreserve
    assert names.count("job.lease") == 3
    assert names.count("job.complete") == 2
    assert names.count("job.dead_letter") == 1
