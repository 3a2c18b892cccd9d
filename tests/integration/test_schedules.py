"""Scheduler sources (issue 10 point 5): registering a schedule over HTTP (both prefixes,
bad cron syntax, time zone, policy or template as 400 naming the field, nothing written),
and the scheduler's passes on a server of their own: one job per tick with eventTime the
tick and the event-time key, a tick never enqueued twice, catch-up after downtime by
misfire policy, a paused source's ticks dropped; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.domain import sources
from server.domain.context import CallContext
from server.domain.jobs import EnqueueRequest, JobLimits
from server.domain.schedules import ScheduleRequest, fire_due
from server.storage.tables import JobRow, ScheduleRow, SourceRow, table_of
from tests.conftest import BACKENDS, _create_pg_database, _drop_pg_database, settings_for
from tests.support.auth import TokenFactory

PREFIXES = ("/jobengine", "/orchestrator")
_jobs = table_of(JobRow)
_schedules = table_of(ScheduleRow)
_sources = table_of(SourceRow)
GRACE = timedelta(seconds=60)


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def headers(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    found = await tokens.headers(tenant)
    return {**found, "X-Stella-Operator-Reason": "schedule test"}


async def _count(app: Application, table: sa.Table, tenant: str) -> int:
    async with app.db.read() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id == tenant)
        return int((await conn.execute(query)).scalar_one())


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_scheduler_source_is_registered_and_read_with_its_schedule(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, prefix: str
) -> None:
    body = {
        "name": "nightly",
        "sourceType": "scheduler",
        "schedule": {
            "cron": "30 2 * * *",
            "timeZone": "Europe/Paris",
            "misfirePolicy": "run_once",
            "jobTemplate": {"jobType": "report", "priority": 7, "payload": {"kind": "daily"}},
        },
    }
    response = await http.post(f"{prefix}/sources", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    schedule = dict(created["schedule"])
    next_run = datetime.fromisoformat(schedule.pop("nextRunAt").replace("Z", "+00:00"))
    assert schedule == {
        "cron": "30 2 * * *",
        "timeZone": "Europe/Paris",
        "misfirePolicy": "run_once",
        "jobTemplate": {
            "jobType": "report",
            "priority": 7,
            "payload": {"kind": "daily"},
            "maxAttempts": 3,
            "backoff": {"initialDelay": "1s", "maxDelay": "300s", "multiplier": 2.0, "jitter": 0.2},
        },
    }
    paris = next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) in ((2, 30), (3, 0))  # 03:00 on a spring-forward night
    assert 0 < (next_run - datetime.now(UTC)).total_seconds() <= 86_400 + 3600
    got = await http.get(f"{prefix}/sources/{created['sourceId']}", headers=headers)
    assert got.json() == created
    listed = await http.get(f"{prefix}/sources?sourceType=scheduler", headers=headers)
    assert listed.json()["items"] == [created]
    async with app.db.read() as conn:
        [row] = (
            await conn.execute(sa.select(_schedules).where(_schedules.c.tenant_id == tenant))
        ).all()
    assert (row.source_id, row.cron, row.time_zone, row.misfire_policy, row.payload) == (
        created["sourceId"],
        "30 2 * * *",
        "Europe/Paris",
        "run_once",
        '{"kind":"daily"}',
    )


BAD_SCHEDULES = [
    pytest.param(
        {"cron": "0 25 * * *"},
        "schedule.cron",
        "schedule.cron: is not a cron expression (Bad hour)",
        id="unknown-cron-syntax",
    ),
    pytest.param(
        {"cron": "0 9 * * MONDAY"},
        "schedule.cron",
        "schedule.cron: is not a cron expression (Bad day-of-week)",
        id="bad-weekday",
    ),
    pytest.param(
        {"timeZone": "Europe/Atlantis"},
        "schedule.timeZone",
        "schedule.timeZone: must be an IANA time zone name, got 'Europe/Atlantis'",
        id="unknown-time-zone",
    ),
    pytest.param(
        {"misfirePolicy": "catch_up"},
        "schedule.misfirePolicy",
        "schedule.misfirePolicy: must be one of skip, run_once, got 'catch_up'",
        id="unknown-misfire-policy",
    ),
    pytest.param(
        {"jobTemplate": {"jobType": "ok", "maxAttempts": 500}},
        "schedule.jobTemplate.maxAttempts",
        "schedule.jobTemplate.maxAttempts: must be between 1 and 100, got 500",
        id="bad-template",
    ),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_SCHEDULES)
async def test_bad_schedules_are_400_naming_the_field_and_register_nothing(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    app: Application,
    tenant: str,
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    schedule = {"cron": "0 * * * *", "jobTemplate": {"jobType": "ok"}, **change}
    for prefix in PREFIXES:
        response = await http.post(
            f"{prefix}/sources",
            json={"name": "bad", "sourceType": "scheduler", "schedule": schedule},
            headers=headers,
        )
        assert response.status_code == 400, response.text
        document = response.json()
        assert document["code"] == "INVALID_ARGUMENT"
        assert document["error"].startswith(message)
        [bad_request] = [d for d in document["details"] if d["@type"].endswith("BadRequest")]
        assert [v["field"] for v in bad_request["fieldViolations"]] == [field]
    assert await _count(app, _sources, tenant) == 0
    assert await _count(app, _schedules, tenant) == 0


async def test_a_schedule_on_a_source_that_is_not_a_scheduler_is_400(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str
) -> None:
    response = await http.post(
        "/jobengine/sources",
        json={
            "name": "hook",
            "sourceType": "webhook",
            "schedule": {"cron": "0 * * * *", "jobTemplate": {"jobType": "ok"}},
        },
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "schedule: is only for a 'scheduler' source"
    assert await _count(app, _sources, tenant) == 0


# --- firing, on a server of its own ------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
async def own(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Application]:
    """A server on a database of its own whose loop is stopped: the tests run the passes
    at times of their choosing, and no other test's schedules are due in it."""
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('sched')) / 'o.db'}"
    else:
        name, url = await _create_pg_database()
    application = Application(settings_for(url))
    await application.start()
    assert application.scheduler is not None
    await application.scheduler.stop()
    try:
        yield application
    finally:
        await application.stop(grace=1)
        if name is not None:
            await _drop_pg_database(name)


async def _register(
    app: Application, cron: str, policy: str, *, only: bool = True
) -> tuple[str, str, datetime]:
    """A scheduler source of a fresh tenant: (tenant, source id, first due tick); unless
    `only` is False the only schedule of the server, so a pass's report counts this one
    alone."""
    if only:
        async with app.db.transaction() as session:
            await (await session.connection()).execute(sa.delete(_schedules))
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    call = CallContext(
        method="/orchestrator.jobengine.v1.SourcesService/RegisterSource",
        trace_id="schedule-test",
        actor="test",
        tenant_id=tenant,
        operator_reason="test",
    )
    template = EnqueueRequest(
        job_type="ingest", source_id="", has_payload=True, payload={"feed": "fx"}
    )
    source, schedule = await sources.register_source(
        app.store,
        call,
        name="feed",
        source_type="scheduler",
        enabled=True,
        schedule=ScheduleRequest(
            cron=cron, time_zone="UTC", misfire_policy=policy, template=template
        ),
    )
    assert schedule is not None
    return tenant, source.source_id, schedule.next_run_at


async def _jobs_of(app: Application, tenant: str) -> list[Any]:
    async with app.db.read() as conn:
        query = sa.select(_jobs).where(_jobs.c.tenant_id == tenant).order_by(_jobs.c.event_time)
        return list((await conn.execute(query)).all())


async def _schedule_row(app: Application, source_id: str) -> Any:
    async with app.db.read() as conn:
        query = sa.select(_schedules).where(_schedules.c.source_id == source_id)
        return (await conn.execute(query)).one()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def test_each_tick_enqueues_one_job_with_its_event_time_once(own: Application) -> None:
    tenant, source_id, first = await _register(own, "*/5 * * * *", "skip")
    limits = JobLimits()
    before = await fire_due(own.store, limits, now=first - timedelta(seconds=1), grace=GRACE)
    assert await _jobs_of(own, tenant) == []
    report = await fire_due(own.store, limits, now=first + timedelta(seconds=2), grace=GRACE)
    assert (report.enqueued, report.skipped) == (1, 0)
    again = await fire_due(own.store, limits, now=first + timedelta(seconds=3), grace=GRACE)
    assert again.enqueued == 0
    [job] = await _jobs_of(own, tenant)
    assert (job.status, job.job_type, job.source_id, json.loads(job.payload)) == (
        "queued",
        "ingest",
        source_id,
        {"feed": "fx"},
    )
    assert _aware(job.event_time) == first
    assert job.idempotency_key == f"event:{source_id}:ingest:{stamp(first)}"
    row = await _schedule_row(own, source_id)
    assert (_aware(row.next_run_at), _aware(row.last_run_at)) == (
        first + timedelta(minutes=5),
        first,
    )
    assert before.enqueued == 0
    # Its history says who enqueued it: the server, with no trace of a call.
    history = await own.store.events.history(tenant, f"jobs/{job.job_id}")
    assert [(e.type, e.trace_id) for e in history] == [("job.enqueued", None)]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("skip", [timedelta(hours=2)]),
        ("run_once", [timedelta(hours=1, minutes=55), timedelta(hours=2)]),
    ],
    ids=["skip", "run_once"],
)
async def test_a_server_that_was_down_catches_up_by_the_misfire_policy(
    own: Application, policy: str, expected: list[timedelta]
) -> None:
    tenant, _, first = await _register(own, "*/5 * * * *", policy)
    now = first + timedelta(hours=2, seconds=20)  # down for two hours
    report = await fire_due(own.store, JobLimits(), now=now, grace=GRACE)
    assert report.enqueued == len(expected)
    assert report.skipped == (1 if policy == "skip" else 0)
    jobs = await _jobs_of(own, tenant)
    assert [_aware(job.event_time) - first for job in jobs] == expected


async def test_a_paused_sources_ticks_are_dropped(own: Application) -> None:
    tenant, source_id, first = await _register(own, "*/5 * * * *", "skip")
    call = CallContext(
        method="/orchestrator.jobengine.v1.SourcesService/PauseSource",
        trace_id="pause",
        actor="test",
        tenant_id=tenant,
        operator_reason="test",
    )
    await sources.set_paused(own.store, call, source_id=source_id, paused=True)
    report = await fire_due(own.store, JobLimits(), now=first + timedelta(seconds=1), grace=GRACE)
    assert (report.enqueued, report.skipped) == (0, 1)
    assert await _jobs_of(own, tenant) == []
    row = await _schedule_row(own, source_id)
    assert (_aware(row.next_run_at), row.last_run_at) == (first + timedelta(minutes=5), None)


async def test_a_schedule_this_host_cannot_plan_does_not_stop_the_others(
    own: Application,
) -> None:
    """A stored zone the machine's zone database no longer has (or a `localtime` on a
    host without that link) raised KeyError inside the pass's transaction: the batch
    rolled back and no schedule of any tenant fired. Now that one is skipped, logged
    and due again a minute later; the others fire."""
    bad_tenant, bad_source, first = await _register(own, "*/5 * * * *", "skip")
    good_tenant, good_source, good_first = await _register(own, "*/5 * * * *", "skip", only=False)
    async with own.db.transaction() as session:
        await (await session.connection()).execute(
            sa.update(_schedules)
            .where(_schedules.c.source_id == bad_source)
            .values(time_zone="Mars/Olympus")
        )
    now = max(first, good_first) + timedelta(seconds=2)  # both due
    report = await fire_due(own.store, JobLimits(), now=now, grace=GRACE)
    assert (report.schedules, report.enqueued, report.skipped) == (2, 1, 1)
    assert [job.source_id for job in await _jobs_of(own, good_tenant)] == [good_source]
    assert await _jobs_of(own, bad_tenant) == []
    bad = await _schedule_row(own, bad_source)
    assert (_aware(bad.next_run_at), bad.last_run_at) == (now + timedelta(minutes=1), None)
    good = await _schedule_row(own, good_source)
    assert _aware(good.next_run_at) == good_first + timedelta(minutes=5)
