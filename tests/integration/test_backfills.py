"""Backfills over HTTP (issue 10 point 6, DESIGN §4.1-4.2, seed 003): a scheduler source's
ticks and other scopes' slices enqueued with event-time keys, work already done answered
not repeated, overlap suppression as 409 naming the backfill, progress, cancel, the
keyset listing, bad input as 400/404 naming the field with nothing written; both
prefixes, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.app import Application
from server.domain.backfills import BackfillLimits, BackfillRequest, create_backfill
from server.domain.context import CallContext
from server.domain.jobs import JobLimits
from server.storage.tables import (
    AuditEntryRow,
    BackfillJobRow,
    BackfillRow,
    EventRow,
    JobRow,
    SourceRow,
    table_of,
)
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock

PREFIXES = ("/jobengine", "/orchestrator")
CACHE = "private, max-age=60, stale-if-error=300"
SCOPES = ("orch:read", "orch:operate", "orch:backfill")
_backfills = table_of(BackfillRow)
_links = table_of(BackfillJobRow)
_jobs = table_of(JobRow)
_sources = table_of(SourceRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
DAILY = "0 0 * * *"  # its next tick is at midnight UTC: not during a test run


PROGRESS = (
    "total",
    "created",
    "existing",
    "queued",
    "throttled",
    "leased",
    "failed",
    "succeeded",
    "canceled",
    "deadLettered",
    "pruned",
)


def progress(**counts: int) -> dict[str, int]:
    """A progress body: every count, 0 unless given."""
    return {name: counts.get(name, 0) for name in PROGRESS}


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def headers(tokens: TokenFactory, tenant: str) -> dict[str, str]:
    found = await tokens.headers(
        tenant, SCOPES, backfill_reason="re-run the missed feed", backfill_ticket="BF-7"
    )
    return {**found, "X-Stella-Operator-Reason": "backfill test"}


@pytest.fixture
def base(clock: TestClock) -> datetime:
    """Midnight UTC ten days ago: windows after it are in the past (the scheduler
    sources' ticks are daily, the slices hourly)."""
    now = datetime.fromtimestamp(clock.wall(), UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)


async def _source(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await http.post("/jobengine/sources", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _scheduler(http: httpx.AsyncClient, headers: dict[str, str], name: str = "feed") -> str:
    created = await _source(
        http,
        headers,
        {
            "name": name,
            "sourceType": "scheduler",
            "schedule": {
                "cron": DAILY,
                "jobTemplate": {"jobType": "ingest", "payload": {"feed": "prices"}},
            },
        },
    )
    return str(created["sourceId"])


async def _backfill(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], prefix: str = ""
) -> httpx.Response:
    return await http.post(f"{prefix or '/jobengine'}/backfills", json=body, headers=headers)


async def _rows(app: Application, table: sa.Table, tenant: str) -> list[Any]:
    async with app.db.read() as conn:
        return list((await conn.execute(sa.select(table).where(table.c.tenant_id == tenant))).all())


async def _tenant_jobs(app: Application, tenant: str) -> list[Any]:
    async with app.db.read() as conn:
        query = sa.select(_jobs).where(_jobs.c.tenant_id == tenant).order_by(_jobs.c.event_time)
        return list((await conn.execute(query)).all())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _error(response: httpx.Response) -> tuple[str, str, list[str], list[str | None]]:
    document = response.json()
    fields = [
        v["field"]
        for d in document.get("details", [])
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]
    reasons = [d.get("reason") for d in document["details"] if d["@type"].endswith("ErrorInfo")]
    return document["code"], document["error"], fields, reasons


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_scheduler_source_backfill_enqueues_one_job_per_tick(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    tokens: TokenFactory,
    app: Application,
    tenant: str,
    base: datetime,
    prefix: str,
) -> None:
    source_id = await _scheduler(http, headers)
    window = {"windowStart": stamp(base), "windowEnd": stamp(base + timedelta(days=4))}
    response = await _backfill(http, headers, {"sourceId": source_id, **window}, prefix)

    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    if prefix == "/orchestrator":
        assert response.headers["Deprecation"] == "true"
        assert response.headers["Link"] == '</jobengine/backfills>; rel="successor-version"'
    body = response.json()
    client_id = (await tokens.client(tenant, SCOPES)).client.client_id
    assert body == {
        "backfillId": body["backfillId"],
        "sourceId": source_id,
        "jobType": "ingest",
        **window,
        "reason": "re-run the missed feed",
        "ticket": "BF-7",
        "status": "active",
        "progress": progress(total=4, created=4, queued=4),
        "createdBy": client_id,
        "createdAt": body["createdAt"],
        "updatedAt": body["createdAt"],
    }
    jobs = await _tenant_jobs(app, tenant)
    ticks = [base + timedelta(days=i) for i in range(4)]
    assert [_aware(job.event_time) for job in jobs] == ticks
    assert [job.idempotency_key for job in jobs] == [
        f"event:{source_id}:ingest:{stamp(tick)}" for tick in ticks
    ]
    assert {(job.job_type, job.source_id, job.status, job.payload) for job in jobs} == {
        ("ingest", source_id, "queued", '{"feed":"prices"}')
    }
    links = await _links_of(app, body["backfillId"])
    assert sorted(links) == sorted((job.job_id, True) for job in jobs)
    # The API shows the event time.
    listed = await http.get(f"/jobengine/jobs?sourceId={source_id}", headers=headers)
    assert sorted(item["eventTime"] for item in listed.json()["items"]) == [
        stamp(tick) for tick in ticks
    ]


async def _links_of(app: Application, backfill_id: str) -> list[tuple[str, bool]]:
    async with app.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(_links.c.job_id, _links.c.created).where(
                    _links.c.backfill_id == backfill_id
                )
            )
        ).all()
    return [(row.job_id, row.created) for row in rows]


async def test_ticks_already_enqueued_are_answered_not_repeated(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    """The job the scheduler loop enqueued for a tick (the same request: template,
    eventTime, event-time key) is the backfill's job for that tick, counted existing."""
    source_id = await _scheduler(http, headers)
    tick = base + timedelta(days=1)
    done = await http.post(
        "/jobengine/jobs",
        json={
            "jobType": "ingest",
            "sourceId": source_id,
            "payload": {"feed": "prices"},
            "eventTime": stamp(tick),
            "idempotencyKey": f"event:{source_id}:ingest:{stamp(tick)}",
        },
        headers=headers,
    )
    assert done.status_code == 201, done.text
    response = await _backfill(
        http,
        headers,
        {
            "sourceId": source_id,
            "windowStart": stamp(base),
            "windowEnd": stamp(base + timedelta(days=3)),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["progress"] == progress(total=3, created=2, existing=1, queued=3)
    jobs = await _tenant_jobs(app, tenant)
    assert len(jobs) == 3
    links = dict(await _links_of(app, response.json()["backfillId"]))
    assert links[done.json()["jobId"]] is False
    assert sorted(links.values()) == [False, True, True]


async def test_a_job_type_backfill_enqueues_aligned_slices_through_the_backfill_source(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    start = base + timedelta(minutes=30)
    end = base + timedelta(hours=2, minutes=10)
    response = await _backfill(
        http, headers, {"jobType": "reindex", "windowStart": stamp(start), "windowEnd": stamp(end)}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["slice"] == "3600s"
    assert body["progress"] == progress(total=3, created=3, queued=3)
    [source] = await _rows(app, _sources, tenant)
    assert (source.name, source.source_type, source.source_id) == (
        "backfill",
        "backfill",
        body["sourceId"],
    )
    jobs = await _tenant_jobs(app, tenant)
    slices = [(base + timedelta(hours=i), base + timedelta(hours=i + 1)) for i in range(3)]
    assert [json.loads(job.payload) for job in jobs] == [
        {"windowStart": stamp(s), "windowEnd": stamp(e)} for s, e in slices
    ]
    assert [_aware(job.event_time) for job in jobs] == [s for s, _ in slices]
    # Another scope (this source with a job type) is no duplicate; its slices are.
    other = await _backfill(
        http,
        headers,
        {
            "sourceId": body["sourceId"],
            "jobType": "reindex",
            "windowStart": stamp(base),
            "windowEnd": stamp(base + timedelta(hours=4)),
        },
    )
    assert other.status_code == 201, other.text
    assert other.json()["progress"] == progress(total=4, created=1, existing=3, queued=4)
    assert len(await _rows(app, _sources, tenant)) == 1


async def test_a_window_before_the_epoch_is_400_and_a_tiny_one_covers_its_slice(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    """A window near year 1 left datetime's range in the cron tick search (500); a
    one-microsecond window far from the epoch covered no slice in float seconds (201,
    "completed", no job, yet it blocked overlapping backfills). Now windows start at the
    epoch at the earliest (400 naming windowStart), and slices are counted in whole
    microseconds: the tiny window is its hour's one job."""
    source_id = await _scheduler(http, headers)
    ancient = {
        "sourceId": source_id,
        "windowStart": "0001-01-01T00:00:00Z",
        "windowEnd": "0001-01-01T03:00:00Z",
    }
    refused = await _backfill(http, headers, ancient)
    assert refused.status_code == 400, refused.text
    assert _error(refused)[1:3] == (
        "windowStart: must not be before 1970-01-01T00:00:00Z, got 0001-01-01T00:00:00Z",
        ["windowStart"],
    )
    assert await _rows(app, _backfills, tenant) == []

    start = base + timedelta(minutes=30)
    tiny = {
        "jobType": "tiny",
        "windowStart": stamp(start),
        "windowEnd": stamp(start + timedelta(microseconds=1)),
    }
    created = await _backfill(http, headers, tiny)
    assert created.status_code == 201, created.text
    assert created.json()["progress"] == progress(total=1, created=1, queued=1)
    [job] = await _tenant_jobs(app, tenant)
    assert json.loads(job.payload) == {
        "windowStart": stamp(base),
        "windowEnd": stamp(base + timedelta(hours=1)),
    }


async def test_duplicate_overlapping_backfill_is_409_naming_it_and_writes_nothing(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    source_id = await _scheduler(http, headers)
    first = await _backfill(
        http,
        headers,
        {
            "sourceId": source_id,
            "windowStart": stamp(base),
            "windowEnd": stamp(base + timedelta(days=3)),
        },
    )
    backfill_id = first.json()["backfillId"]
    before = (len(await _rows(app, _jobs, tenant)), len(await _rows(app, _audit, tenant)))
    for prefix in PREFIXES:
        duplicate = await _backfill(
            http,
            headers,
            {
                "sourceId": source_id,
                "windowStart": stamp(base + timedelta(days=2)),
                "windowEnd": stamp(base + timedelta(days=5)),
            },
            prefix,
        )
        assert duplicate.status_code == 409
        code, message, _, reasons = _error(duplicate)
        assert code == "ALREADY_EXISTS"
        assert reasons == ["BACKFILL_DUPLICATE"]
        assert message == (
            f"backfill {backfill_id!r} (active) already covers [{stamp(base)}, "
            f"{stamp(base + timedelta(days=3))}) for this scope, overlapping the requested "
            "window; wait for it, or cancel it first"
        )
    after = (len(await _rows(app, _jobs, tenant)), len(await _rows(app, _audit, tenant)))
    assert after == before
    assert len(await _rows(app, _backfills, tenant)) == 1
    # An adjacent window does not overlap ([start, end) is half-open).
    adjacent = await _backfill(
        http,
        headers,
        {
            "sourceId": source_id,
            "windowStart": stamp(base + timedelta(days=3)),
            "windowEnd": stamp(base + timedelta(days=4)),
        },
    )
    assert adjacent.status_code == 201, adjacent.text


async def test_a_finished_backfill_suppresses_within_the_window_a_canceled_one_does_not(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    app: Application,
    tenant: str,
    base: datetime,
    clock: TestClock,
) -> None:
    source_id = await _scheduler(http, headers)
    window = {"windowStart": stamp(base), "windowEnd": stamp(base + timedelta(days=2))}
    first = (await _backfill(http, headers, {"sourceId": source_id, **window})).json()
    for job_id, _ in await _links_of(app, first["backfillId"]):  # its jobs finish
        canceled = await http.post(f"/jobengine/jobs/{job_id}/cancel", headers=headers)
        assert canceled.status_code == 200
    done = await http.get(f"/jobengine/backfills/{first['backfillId']}", headers=headers)
    assert done.json()["status"] == "completed"
    assert done.json()["progress"] == progress(total=2, created=2, canceled=2)
    assert "finishedAt" in done.json()
    again = await _backfill(http, headers, {"sourceId": source_id, **window})
    assert again.status_code == 409
    assert _error(again)[1].startswith(f"backfill {first['backfillId']!r} (completed)")
    # Past the suppression window (0 s here) it is no duplicate; the slices exist.
    call = CallContext(
        method="/orchestrator.jobengine.v1.BackfillsService/CreateBackfill",
        trace_id="suppression-test",
        actor="test",
        tenant_id=tenant,
        operator_reason="test",
    )
    request = BackfillRequest(
        source_id=source_id,
        job_type="",
        window_start=base,
        window_end=base + timedelta(days=2),
        reason="after the window",
        ticket="",
    )
    later = await create_backfill(
        app.store,
        call,
        request,
        BackfillLimits(suppression_s=0),
        JobLimits(),
        # the server's clock (earlier tests move it), not the wall's: past the finish
        now=datetime.fromtimestamp(clock.wall(), UTC) + timedelta(seconds=1),
    )
    assert (later.progress.created, later.progress.existing) == (0, 2)


async def test_cancel_cancels_its_waiting_jobs_and_is_idempotent(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    source_id = await _scheduler(http, headers)
    created = await _backfill(
        http,
        headers,
        {
            "sourceId": source_id,
            "windowStart": stamp(base),
            "windowEnd": stamp(base + timedelta(days=3)),
        },
    )
    backfill_id = created.json()["backfillId"]
    for prefix in PREFIXES:
        response = await http.post(f"{prefix}/backfills/{backfill_id}/cancel", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json()
        assert body["status"] == "canceled"
        assert body["progress"] == progress(total=3, created=3, canceled=3)
    jobs = await _tenant_jobs(app, tenant)
    assert {job.status for job in jobs} == {"canceled"}
    assert all(job.finished_at is not None for job in jobs)
    async with app.db.read() as conn:
        events = (
            await conn.execute(
                sa.select(_events.c.subject, _events.c.data).where(
                    _events.c.tenant_id == tenant, _events.c.type == "job.canceled"
                )
            )
        ).all()
    assert sorted(e.subject for e in events) == sorted(f"jobs/{job.job_id}" for job in jobs)
    assert {json.loads(e.data)["backfillId"] for e in events} == {backfill_id}
    entries = [
        e for e in await _rows(app, _audit, tenant) if e.resource == f"backfills/{backfill_id}"
    ]
    assert sorted(e.action for e in entries) == [
        "backfills.cancel",
        "backfills.cancel",
        "backfills.create",
    ]


async def test_get_and_list_with_progress_caching_and_keyset_pages(
    http: httpx.AsyncClient, headers: dict[str, str], tenant: str, base: datetime
) -> None:
    source_id = await _scheduler(http, headers)
    ids = []
    for i in range(3):  # three job-type scopes, newest last
        response = await _backfill(
            http,
            headers,
            {
                "jobType": f"kind-{i}",
                "windowStart": stamp(base),
                "windowEnd": stamp(base + timedelta(hours=1)),
            },
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["backfillId"])
    for prefix in PREFIXES:
        got = await http.get(f"{prefix}/backfills/{ids[0]}", headers=headers)
        assert got.status_code == 200
        assert got.headers["Cache-Control"] == CACHE
        assert got.json()["progress"] == progress(total=1, created=1, queued=1)
        cached = await http.get(
            f"{prefix}/backfills/{ids[0]}",
            headers={**headers, "If-None-Match": got.headers["ETag"]},
        )
        assert cached.status_code == 304
    first = await http.get("/jobengine/backfills?limit=2", headers=headers)
    assert first.status_code == 200
    page = first.json()
    assert [item["backfillId"] for item in page["items"]] == [ids[2], ids[1]]
    second = await http.get(
        f"/jobengine/backfills?limit=2&continuationToken={page['continuationToken']}",
        headers=headers,
    )
    assert [item["backfillId"] for item in second.json()["items"]] == [ids[0]]
    assert "continuationToken" not in second.json()
    filtered = await http.get("/jobengine/backfills?jobType=kind-1", headers=headers)
    assert [item["backfillId"] for item in filtered.json()["items"]] == [ids[1]]
    mismatch = await http.get(
        f"/jobengine/backfills?limit=2&jobType=kind-1&continuationToken={page['continuationToken']}",
        headers=headers,
    )
    assert mismatch.status_code == 400
    none = await http.get(f"/jobengine/backfills?sourceId={source_id}", headers=headers)
    assert none.json() == {"items": []}
    missing = await http.get("/jobengine/backfills/no-such-backfill", headers=headers)
    assert missing.status_code == 404
    assert _error(missing)[1] == "backfill 'no-such-backfill' not found"


async def test_creating_needs_orch_backfill_and_is_audited_with_the_token_claims(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    tokens: TokenFactory,
    app: Application,
    tenant: str,
    base: datetime,
) -> None:
    body = {
        "jobType": "audited",
        "windowStart": stamp(base),
        "windowEnd": stamp(base + timedelta(hours=1)),
        "reason": "own reason",
        "ticket": "OWN-1",
    }
    plain = await tokens.headers(tenant)  # orch:read orch:operate
    refused = await _backfill(http, {**plain, "X-Stella-Operator-Reason": "no scope"}, body)
    assert refused.status_code == 403
    no_reason = await _backfill(
        http, {k: v for k, v in headers.items() if k != "X-Stella-Operator-Reason"}, body
    )
    assert no_reason.status_code == 400
    created = await _backfill(http, {**headers, "X-Stella-Operator-Ticket": "OPS-9"}, body)
    assert created.status_code == 201, created.text
    assert (created.json()["reason"], created.json()["ticket"]) == ("own reason", "OWN-1")
    [entry] = [e for e in await _rows(app, _audit, tenant) if e.action == "backfills.create"]
    assert entry.resource == f"backfills/{created.json()['backfillId']}"
    assert (entry.reason, entry.ticket) == ("backfill test", "OPS-9")
    assert (entry.backfill_reason, entry.backfill_ticket) == ("re-run the missed feed", "BF-7")
    after = json.loads(entry.after)
    assert (after["jobType"], after["status"], after["jobsCreated"]) == ("audited", "active", 1)


BAD_WINDOWS = [
    pytest.param({}, ["windowStart", "windowEnd"], "windowStart: is required", id="missing"),
    pytest.param(
        {"start": 2, "end": 1},
        ["windowEnd"],
        "windowEnd: must be after windowStart ({s}): the window is inverted, got {e}",
        id="inverted",
    ),
    pytest.param(
        {"start": 1, "end": 1},
        ["windowEnd"],
        "windowEnd: must be after windowStart: the window is empty",
        id="empty",
    ),
    pytest.param(
        {"start": -40, "end": 0},
        ["windowEnd"],
        "windowEnd: must be at most 31 days after windowStart (the server's maximum window)"
        ", got a window of 40 days",
        id="beyond-the-maximum-span",
    ),
    pytest.param(
        {"start": 1, "end": 24},
        ["windowEnd"],
        "windowEnd: must not be in the future",
        id="future",
    ),
]


@pytest.mark.parametrize(("window", "fields", "message"), BAD_WINDOWS)
async def test_bad_windows_are_400_naming_the_field_and_write_nothing(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    app: Application,
    tenant: str,
    base: datetime,
    window: dict[str, int],
    fields: list[str],
    message: str,
) -> None:
    source_id = await _scheduler(http, headers)
    body: dict[str, Any] = {"sourceId": source_id}
    start = end = base
    if "start" in window:
        start, end = base + timedelta(days=window["start"]), base + timedelta(days=window["end"])
        body |= {"windowStart": stamp(start), "windowEnd": stamp(end)}
    for prefix in PREFIXES:
        response = await _backfill(http, headers, body, prefix)
        assert response.status_code == 400, response.text
        code, text, named, _ = _error(response)
        assert code == "INVALID_ARGUMENT"
        assert named == fields
        assert text.startswith(message.format(s=stamp(start), e=stamp(end)))
    assert await _rows(app, _backfills, tenant) == []
    assert await _rows(app, _jobs, tenant) == []


async def test_bad_scopes_are_400_or_404_and_write_nothing(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    scheduler = await _scheduler(http, headers)
    manual = str((await _source(http, headers, {"name": "m", "sourceType": "manual"}))["sourceId"])
    window = {"windowStart": stamp(base), "windowEnd": stamp(base + timedelta(hours=1))}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "sourceId: is required when jobType is absent"),
        ({"jobType": "Bad Type"}, 400, "jobType: must be a lowercase slug"),
        ({"sourceId": "no-such-source"}, 404, "source 'no-such-source' not found"),
        (
            {"sourceId": scheduler, "jobType": "other"},
            400,
            "jobType: must be the scheduler source's template job type 'ingest' or absent, "
            "got 'other'",
        ),
        ({"sourceId": manual}, 400, "jobType: is required for a source that is not a scheduler"),
        ({"jobType": "x", "reason": "r" * 257}, 400, "reason: must be at most 256 characters"),
        ({"jobType": "x", "ticket": "t" * 129}, 400, "ticket: must be at most 128 characters"),
    ]
    for extra, status, message in cases:
        response = await _backfill(http, headers, {**window, **extra})
        assert response.status_code == status, (extra, response.text)
        assert _error(response)[1].startswith(message), (extra, response.text)
    minutely = await _source(
        http,
        headers,
        {
            "name": "minutely",
            "sourceType": "scheduler",
            # Every minute of January 1st: never during a test run, 1440 ticks that day.
            "schedule": {"cron": "* * 1 1 *", "jobTemplate": {"jobType": "tick"}},
        },
    )
    many = await _backfill(
        http,
        headers,
        {
            "sourceId": minutely["sourceId"],
            "windowStart": "2026-01-01T00:00:00Z",
            "windowEnd": "2026-01-02T00:00:00Z",
        },
    )
    assert many.status_code == 400
    assert _error(many)[1] == (
        "windowEnd: the window covers more than 1000 cron ticks, more than the server's 1000 "
        "jobs per backfill; request a shorter window"
    )
    assert await _rows(app, _backfills, tenant) == []
    assert await _rows(app, _jobs, tenant) == []
    assert len(await _rows(app, _sources, tenant)) == 3  # no "backfill" source left behind


async def test_a_paused_source_cannot_be_backfilled(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    source_id = await _scheduler(http, headers)
    paused = await http.post(f"/jobengine/sources/{source_id}/pause", headers=headers)
    assert paused.status_code == 200
    response = await _backfill(
        http,
        headers,
        {
            "sourceId": source_id,
            "windowStart": stamp(base),
            "windowEnd": stamp(base + timedelta(hours=1)),
        },
    )
    assert response.status_code == 409
    assert _error(response)[3] == ["SOURCE_PAUSED"]
    assert await _rows(app, _backfills, tenant) == []


async def test_two_identical_requests_at_once_make_one_backfill_and_one_409(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    """The suppression check and the insert are serialised per (tenant, scope): an
    advisory lock on PostgreSQL, the single writer on SQLite."""
    body = {
        "jobType": "raced",
        "windowStart": stamp(base),
        "windowEnd": stamp(base + timedelta(hours=2)),
    }
    responses = await asyncio.gather(*(_backfill(http, headers, body) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert len(await _rows(app, _backfills, tenant)) == 1
    assert len(await _rows(app, _jobs, tenant)) == 2


async def test_a_tick_enqueued_under_an_older_template_counts_as_existing(
    http: httpx.AsyncClient, headers: dict[str, str], app: Application, tenant: str, base: datetime
) -> None:
    """The tick's key is held by a job of another body (the template changed since):
    that job covers the tick; nothing is enqueued for it and nothing fails."""
    source_id = await _scheduler(http, headers)
    older = await http.post(
        "/jobengine/jobs",
        json={
            "jobType": "ingest",
            "sourceId": source_id,
            "payload": {"feed": "prices", "version": 1},
            "eventTime": stamp(base),
            "idempotencyKey": f"event:{source_id}:ingest:{stamp(base)}",
        },
        headers=headers,
    )
    assert older.status_code == 201, older.text
    response = await _backfill(
        http,
        headers,
        {
            "sourceId": source_id,
            "windowStart": stamp(base),
            "windowEnd": stamp(base + timedelta(days=2)),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["progress"] == progress(total=2, created=1, existing=1, queued=2)
    links = dict(await _links_of(app, response.json()["backfillId"]))
    assert links[older.json()["jobId"]] is False
    assert len(await _rows(app, _jobs, tenant)) == 2
