"""The batch inserts every enqueue and every event goes through (`insert_jobs`,
`insert_events`), on both backends: the rows stored are exactly the values given,
whichever columns hold one value in every row of the batch. On PostgreSQL those
columns are bound once as scalars (storage/unnest.py), so a batch is checked in each
shape: every column differing, most columns shared, one row.
"""

from __future__ import annotations

import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.app import Application
from server.domain.events import NewEvent
from server.domain.jobs import Job
from server.storage.repositories.events import insert_events
from server.storage.repositories.jobs import insert_jobs
from server.storage.tables import EventRow, JobRow, table_of

_jobs = table_of(JobRow)
_events = table_of(EventRow)
NOW = datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=UTC)


def _job(tenant: str, **changes: Any) -> Job:
    base = Job(
        job_id=str(uuid.uuid4()),
        tenant_id=tenant,
        project_id=None,
        job_type="batch.insert",
        source_id="src-1",
        status="queued",
        priority=0,
        payload=None,
        result=None,
        attempts=0,
        max_attempts=5,
        backoff_initial_s=1.0,
        backoff_max_s=60.0,
        backoff_multiplier=2.0,
        backoff_jitter=0.1,
        run_at=NOW,
        next_eligible_at=NOW,
        lease_id=None,
        lease_owner=None,
        lease_expires_at=None,
        quota_id=None,
        last_error=None,
        idempotency_key=None,
        request_hash=None,
        replay_of=None,
        pack_run_id=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=None,
    )
    return replace(base, **changes)


async def _stored_jobs(app: Application, tenant: str) -> dict[str, dict[str, Any]]:
    async with app.db.transaction() as session:
        conn = await session.connection()
        rows = await conn.execute(sa.select(_jobs).where(_jobs.c.tenant_id == tenant))
        return {row.job_id: row._asdict() for row in rows}


def _expected(job: Job) -> dict[str, Any]:
    return {field.name: getattr(job, field.name) for field in fields(Job)}


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    return {
        name: value.replace(tzinfo=UTC)
        if isinstance(value, datetime) and value.tzinfo is None
        else value
        for name, value in row.items()
        if name in {field.name for field in fields(Job)}
    }


async def _insert(app: Application, jobs: list[Job]) -> set[str]:
    async with app.db.transaction() as session:
        return await insert_jobs(await session.connection(), jobs)


async def test_a_batch_whose_rows_share_most_columns_stores_every_value(
    app: Application,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    later = NOW + timedelta(minutes=5)
    jobs = [
        _job(tenant),
        _job(tenant, priority=7, payload='{"a":1}', idempotency_key="k-1", run_at=later),
        _job(tenant, status="throttled", next_eligible_at=later, trace_id="ab" * 16),
    ]

    inserted = await _insert(app, jobs)

    assert inserted == {job.job_id for job in jobs}
    stored = await _stored_jobs(app, tenant)
    assert {job_id: _normalised(row) for job_id, row in stored.items()} == {
        job.job_id: _expected(job) for job in jobs
    }


async def test_a_batch_differing_in_every_column_and_a_single_row_store_every_value(
    app: Application,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    first = _job(tenant)
    second = _job(
        tenant,
        project_id="p-2",
        job_type="batch.other",
        source_id="src-2",
        status="throttled",
        priority=-3,
        payload="[1,2]",
        result='"r"',
        attempts=1,
        max_attempts=9,
        backoff_initial_s=2.5,
        backoff_max_s=30.0,
        backoff_multiplier=1.5,
        backoff_jitter=0.0,
        run_at=NOW + timedelta(seconds=1),
        next_eligible_at=None,
        lease_id="l-1",
        lease_owner="w-1",
        lease_expires_at=NOW + timedelta(seconds=30),
        quota_id="q-1",
        last_error='{"code":"x"}',
        idempotency_key="k-2",
        request_hash="h",
        replay_of=first.job_id,
        pack_run_id="pr-1",
        created_at=NOW + timedelta(seconds=2),
        updated_at=NOW + timedelta(seconds=3),
        finished_at=NOW + timedelta(seconds=4),
        owner="orchestra/x",
        event_time=NOW,
        trace_parent="00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
        trace_id="ab" * 16,
    )
    alone = _job(tenant, priority=2, idempotency_key="k-3")

    assert await _insert(app, [first, second]) == {first.job_id, second.job_id}
    assert await _insert(app, [alone]) == {alone.job_id}

    stored = await _stored_jobs(app, tenant)
    assert {job_id: _normalised(row) for job_id, row in stored.items()} == {
        job.job_id: _expected(job) for job in (first, second, alone)
    }


async def test_a_batch_with_a_key_the_tenant_holds_skips_only_that_row(app: Application) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    held = _job(tenant, idempotency_key="k-held")
    assert await _insert(app, [held]) == {held.job_id}
    again = _job(tenant, idempotency_key="k-held")
    fresh = _job(tenant, idempotency_key="k-fresh")

    assert await _insert(app, [again, fresh]) == {fresh.job_id}

    assert set(await _stored_jobs(app, tenant)) == {held.job_id, fresh.job_id}


async def test_events_sharing_all_but_their_subject_store_their_own_data(
    app: Application,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    # Equal in Python, different in JSON: each row must keep its own text.
    datas: list[dict[str, Any]] = [
        {"to": "queued"},
        {"to": "queued"},
        {"to": 1},
        {"to": True},
        {"to": 1.0},
        {"to": None},
        {"to": [1, "a"]},
        {},
    ]
    events = [
        NewEvent(tenant_id=tenant, type="job.enqueued", subject=f"jobs/{i}", data=data, time=NOW)
        for i, data in enumerate(datas)
    ]
    async with app.db.transaction() as session:
        conn = await session.connection()
        await insert_events(conn, events)
        rows = (
            await conn.execute(
                sa.select(_events.c.subject, _events.c.type, _events.c.data, _events.c.time)
                .where(_events.c.tenant_id == tenant)
                .order_by(_events.c.event_id)
            )
        ).all()

    assert [(row.subject, row.type, row.data) for row in rows] == [
        ("jobs/0", "job.enqueued", '{"to":"queued"}'),
        ("jobs/1", "job.enqueued", '{"to":"queued"}'),
        ("jobs/2", "job.enqueued", '{"to":1}'),
        ("jobs/3", "job.enqueued", '{"to":true}'),
        ("jobs/4", "job.enqueued", '{"to":1.0}'),
        ("jobs/5", "job.enqueued", '{"to":null}'),
        ("jobs/6", "job.enqueued", '{"to":[1,"a"]}'),
        ("jobs/7", "job.enqueued", "{}"),
    ]
    assert {
        row.time.replace(tzinfo=UTC) if row.time.tzinfo is None else row.time for row in rows
    } == {NOW}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_float_zeros_keep_their_sign_in_either_shape(app: Application) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    jobs = [_job(tenant, backoff_jitter=0.0), _job(tenant, backoff_jitter=-0.0)]
    jobs += [_job(tenant, backoff_jitter=-0.0), _job(tenant, backoff_jitter=-0.0)]

    assert await _insert(app, jobs[:2]) == {jobs[0].job_id, jobs[1].job_id}
    assert await _insert(app, jobs[2:]) == {jobs[2].job_id, jobs[3].job_id}

    async with app.db.transaction() as session:
        conn = await session.connection()
        stored: dict[str, str] = dict(
            (
                await conn.execute(
                    sa.text("SELECT job_id, backoff_jitter::text FROM jobs WHERE tenant_id = :t"),
                    {"t": tenant},
                )
            ).all()
        )
    assert [stored[job.job_id] for job in jobs] == ["0", "-0", "-0", "-0"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("shared", [True, False], ids=["bound-once", "unnested"])
async def test_a_value_longer_than_its_column_is_refused_in_either_shape(
    app: Application, shared: bool
) -> None:
    """lease_owner is VARCHAR(200): a 250-character value is refused whether the batch
    binds it once or as an array (cast to VARCHAR(200)[] it was cut to 200 silently),
    and nothing of the batch is written."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    owners = ["w" * 250, "w" * 250] if shared else ["w" * 250, "v" * 250]
    jobs = [_job(tenant, lease_owner=owner) for owner in owners]

    with pytest.raises(sa.exc.DBAPIError, match="value too long for type character varying"):
        await _insert(app, jobs)

    assert await _stored_jobs(app, tenant) == {}
