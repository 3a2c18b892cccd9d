"""Jobs end to end (issue 9 points 2 and 3): the same scenarios over gRPC, REST and
in-process, on SQLite and PostgreSQL, checked against the stored rows and events.

States a scenario needs but no JobsService call makes (a succeeded or leased job)
are written to the row directly: leasing and completing are WorkerService's and are
tested with it; here they are the starting point of cancel and replay.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2

from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.jobs import JobsClient, new_job
from clients.sources import SourcesClient
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.transports.rest import RestTransport
from orchestrator.jobengine.v1 import job_pb2
from server.app import Application
from server.domain.leasing import BUSY_DELAY_S
from server.storage.pruning import prune_once
from server.storage.tables import (
    AuditEntryRow,
    EventRow,
    JobRow,
    QuotaMinuteRow,
    QuotaRow,
    table_of,
)
from tests.support.auth import TokenFactory

_jobs = table_of(JobRow)
_events = table_of(EventRow)
_audit = table_of(AuditEntryRow)
_quotas = table_of(QuotaRow)
_minutes = table_of(QuotaMinuteRow)


@pytest.fixture
def jobs_client(transport: Transport, caller_headers: CallerHeaders) -> JobsClient:
    return JobsClient(transport, caller_headers)


@pytest.fixture
async def source_id(sources_client: SourcesClient) -> str:
    return (await sources_client.register_source("jobs-source", "manual")).source_id


@pytest.fixture
async def grpc_jobs(grpc_target: str, caller_headers: CallerHeaders) -> AsyncIterator[JobsClient]:
    transport = GrpcTransport(grpc_target)
    try:
        yield JobsClient(transport, caller_headers)
    finally:
        await transport.close()


@pytest.fixture
async def grpc_source(grpc_target: str, caller_headers: CallerHeaders) -> str:
    transport = GrpcTransport(grpc_target)
    try:
        client = SourcesClient(transport, caller_headers)
        return (await client.register_source("grpc-source", "manual")).source_id
    finally:
        await transport.close()


def _rest(client: JobsClient) -> bool:
    return isinstance(client.transport, RestTransport)


async def _rows(app: Application, table: sa.Table, *where: Any) -> list[sa.Row[Any]]:
    async with app.db.read() as conn:
        return list((await conn.execute(sa.select(table).where(*where))).all())


async def _job_rows(app: Application, tenant: str) -> list[sa.Row[Any]]:
    return await _rows(app, _jobs, _jobs.c.tenant_id == tenant)


async def _history(app: Application, tenant: str, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await _rows(
        app, _events, _events.c.tenant_id == tenant, _events.c.subject == f"jobs/{job_id}"
    )
    return [(row.type, json.loads(row.data)) for row in sorted(rows, key=lambda r: r.event_id)]


async def _set(app: Application, job_id: str, **values: Any) -> None:
    async with app.db.transaction() as session:
        await (await session.connection()).execute(
            sa.update(_jobs).where(_jobs.c.job_id == job_id).values(**values)
        )


async def _job_audit(app: Application, tenant: str) -> list[sa.Row[Any]]:
    """The tenant's audit entries of job actions, oldest first."""
    rows = await _rows(
        app, _audit, _audit.c.tenant_id == tenant, _audit.c.action.startswith("jobs.")
    )
    return sorted(rows, key=lambda row: row.created_at)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- enqueue ------------------------------------------------------------------------------


async def test_enqueue_answers_the_queued_job_and_writes_row_event_and_audit(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    jobs_client.headers.trace_id = f"trace-{uuid.uuid4().hex[:12]}"
    payload = {"url": "https://example.test/a", "depth": 2, "tags": ["x", None, True]}
    response = await jobs_client.enqueue_job(
        new_job("crawl.page", source_id, payload=payload, priority=7)
    )
    job = response.job
    assert response.created is not _rest(jobs_client)  # REST answers the job only
    assert uuid.UUID(job.job_id)
    assert (job.job_type, job.source_id, job.status) == ("crawl.page", source_id, "queued")
    assert (job.priority, job.attempts, job.max_attempts) == (7, 0, 3)
    assert job.run_at == job.created_at == job.updated_at == job.next_eligible_at
    assert not job.HasField("lease_expires_at")
    assert not job.HasField("last_error")
    assert not job.HasField("idempotency_key")
    assert not job.HasField("replay_of")
    assert job.backoff == job_pb2.Backoff(
        initial_delay=duration_pb2.Duration(seconds=1),
        max_delay=duration_pb2.Duration(seconds=300),
        multiplier=2.0,
        jitter=0.2,
    )
    assert job.payload.struct_value["url"] == "https://example.test/a"
    assert job.payload.struct_value["depth"] == 2
    tags = job.payload.struct_value.get_or_create_list("tags")
    assert list(tags) == ["x", None, True]

    [row] = await _job_rows(app, tenant)
    assert row.job_id == job.job_id
    assert json.loads(row.payload) == payload
    # No idempotency key: no request hash (it is only compared on a key's repeat).
    assert (row.status, row.finished_at, row.quota_id, row.request_hash) == (
        "queued",
        None,
        None,
        None,
    )
    [event] = await _rows(app, _events, _events.c.subject == f"jobs/{job.job_id}")
    assert (event.tenant_id, event.type, json.loads(event.data)) == (
        tenant,
        "job.enqueued",
        {"to": "queued"},
    )
    assert event.trace_id == jobs_client.headers.trace_id
    [entry] = await _job_audit(app, tenant)
    assert (entry.action, entry.resource, entry.before) == (
        "jobs.enqueue",
        f"jobs/{job.job_id}",
        None,
    )
    assert json.loads(entry.after)["status"] == "queued"

    got = await jobs_client.get_job(job.job_id)
    assert got.job == job
    [item] = got.history
    assert (item.event_id, item.type, item.subject) == (
        str(event.event_id),
        "job.enqueued",
        f"jobs/{job.job_id}",
    )
    assert dict(item.data) == {"to": "queued"}
    assert item.trace_id == jobs_client.headers.trace_id


async def test_enqueue_takes_every_optional_field(jobs_client: JobsClient, source_id: str) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    backoff = job_pb2.Backoff(
        initial_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000),
        max_delay=duration_pb2.Duration(seconds=60),
        multiplier=3.0,
        jitter=0.0,
    )
    job = (
        await jobs_client.enqueue_job(
            new_job(
                "report",
                source_id,
                payload=[1, "two", 3.5],
                priority=-1000,
                max_attempts=100,
                idempotency_key="key with spaces ✓",
                run_at=run_at,
                pack_run_id="pack-7",
                backoff=backoff,
            )
        )
    ).job
    assert job.run_at.ToDatetime(tzinfo=UTC) == run_at
    assert job.next_eligible_at == job.run_at
    assert (job.priority, job.max_attempts) == (-1000, 100)
    assert (job.idempotency_key, job.pack_run_id) == ("key with spaces ✓", "pack-7")
    assert job.backoff == backoff
    assert list(job.payload.list_value) == [1, "two", 3.5]


async def test_json_null_and_scalar_payloads_round_trip(
    jobs_client: JobsClient, source_id: str
) -> None:
    for value in ("just text", 42, False):
        job = (await jobs_client.enqueue_job(new_job("echo", source_id, payload=value))).job
        fetched = (await jobs_client.get_job(job.job_id)).job
        assert fetched.payload == job.payload
        assert fetched.payload.WhichOneof("kind") in ("string_value", "number_value", "bool_value")
    without = (await jobs_client.enqueue_job(new_job("echo", source_id))).job
    assert not without.HasField("payload")


async def test_same_idempotency_key_and_body_answers_the_existing_job(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    spec = new_job("ingest", source_id, payload={"n": 1}, idempotency_key="order-42")
    first = await jobs_client.enqueue_job(spec)
    again = await jobs_client.enqueue_job(spec)
    assert again.job == first.job
    if not _rest(jobs_client):
        assert (first.created, again.created) == (True, False)
    assert len(await _job_rows(app, tenant)) == 1
    assert [t for t, _ in await _history(app, tenant, first.job.job_id)] == ["job.enqueued"]
    entries = await _job_audit(app, tenant)
    assert [(e.action, e.before is None) for e in entries] == [
        ("jobs.enqueue", True),
        ("jobs.enqueue", False),
    ]
    # Defaults spelled out are the same body.
    explicit = new_job("ingest", source_id, payload={"n": 1}, idempotency_key="order-42")
    explicit.max_attempts = 3
    explicit.backoff.multiplier = 2.0
    assert (await jobs_client.enqueue_job(explicit)).job.job_id == first.job.job_id


async def test_same_idempotency_key_with_another_body_is_already_exists(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    await jobs_client.enqueue_job(new_job("ingest", source_id, payload=1, idempotency_key="k1"))
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("ingest", source_id, payload=2, idempotency_key="k1"))
    assert err.value.code == "ALREADY_EXISTS"
    assert err.value.reason == "JOB_EXISTS"
    assert err.value.message == (
        "a job with idempotencyKey 'k1' already exists in this tenant with another request body"
    )
    assert err.value.detail("ErrorInfo")["metadata"] == {"idempotencyKey": "k1"}  # type: ignore[index]
    assert err.value.http_status == (409 if _rest(jobs_client) else None)
    assert len(await _job_rows(app, tenant)) == 1


async def test_unknown_and_foreign_sources_are_not_found(
    jobs_client: JobsClient, tokens: TokenFactory, grpc_target: str
) -> None:
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("ingest", "no-such-source"))
    assert (err.value.code, err.value.reason) == ("NOT_FOUND", "SOURCE_NOT_FOUND")
    assert err.value.message == "source 'no-such-source' not found"

    other = f"o-{uuid.uuid4().hex[:8]}"
    transport = GrpcTransport(grpc_target)
    try:
        headers = CallerHeaders(
            tenant=other, access_token=await tokens.token(other), operator_reason="probe"
        )
        foreign = await SourcesClient(transport, headers).register_source("theirs", "manual")
    finally:
        await transport.close()
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("ingest", foreign.source_id))
    assert (err.value.code, err.value.message) == (
        "NOT_FOUND",
        f"source '{foreign.source_id}' not found",
    )


async def test_paused_or_disabled_source_refuses_new_jobs(
    app: Application,
    jobs_client: JobsClient,
    sources_client: SourcesClient,
    source_id: str,
    tenant: str,
) -> None:
    await sources_client.pause_source(source_id)
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("ingest", source_id))
    assert (err.value.code, err.value.reason) == ("FAILED_PRECONDITION", "SOURCE_PAUSED")
    assert err.value.message == f"source '{source_id}' is paused; resume it to enqueue jobs"
    assert err.value.http_status == (409 if _rest(jobs_client) else None)

    disabled = await sources_client.register_source("off", "manual", enabled=False)
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("ingest", disabled.source_id))
    assert (err.value.code, err.value.reason) == ("FAILED_PRECONDITION", "SOURCE_DISABLED")
    assert await _job_rows(app, tenant) == []
    await sources_client.resume_source(source_id)
    assert (await jobs_client.enqueue_job(new_job("ingest", source_id))).job.status == "queued"


async def test_bad_fields_are_all_named(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    bad = new_job(
        "Not A Slug",
        source_id,
        priority=1001,
        max_attempts=101,
        idempotency_key="line\nbreak",
        pack_run_id="a/b",
        backoff=job_pb2.Backoff(
            initial_delay=duration_pb2.Duration(seconds=-1),
            max_delay=duration_pb2.Duration(seconds=90_000),
            multiplier=11.0,
            jitter=1.5,
        ),
    )
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(bad)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.http_status == (400 if _rest(jobs_client) else None)
    assert err.value.violations == [
        (
            "job.jobType",
            "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or '-'"
            ", got 'Not A Slug'",
        ),
        ("job.priority", "must be between -1000 and 1000, got 1001"),
        ("job.maxAttempts", "must be between 1 and 100, got 101"),
        ("job.backoff.maxDelay", "must be more than 0s and at most 86400s (24 h)"),
        ("job.backoff.initialDelay", "must be from 0s to maxDelay (90000s)"),
        ("job.backoff.multiplier", "must be from 1.0 to 10.0, got 11.0"),
        ("job.backoff.jitter", "must be from 0.0 to 1.0, got 1.5"),
        ("job.idempotencyKey", "must not contain control characters"),
        ("job.packRunId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'"),
    ]
    later = new_job(
        "ok", source_id, backoff=job_pb2.Backoff(initial_delay=duration_pb2.Duration(seconds=61))
    )
    later.backoff.max_delay.seconds = 60
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(later)
    assert err.value.violations == [
        ("job.backoff.initialDelay", "must be from 0s to maxDelay (60s)")
    ]
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("", ""))
    assert err.value.violations == [("job.jobType", "is required"), ("job.sourceId", "is required")]
    assert await _job_rows(app, tenant) == []


async def test_a_backoff_duration_that_is_no_valid_duration_is_refused_over_grpc(
    app: Application, grpc_jobs: JobsClient, grpc_source: str, tenant: str
) -> None:
    """Over gRPC a Duration's nanos may be anything: `seconds=1, nanos=-1` or nanos
    of 2e9 were normalised and taken (REST's "1.5s" strings cannot say them). Now
    INVALID_ARGUMENT naming the field, as LeaseJobs' leaseDuration already was; a
    batch names the job's index."""
    bad = new_job(
        "ok",
        grpc_source,
        backoff=job_pb2.Backoff(initial_delay=duration_pb2.Duration(seconds=1, nanos=-1)),
    )
    with pytest.raises(ApiError) as err:
        await grpc_jobs.enqueue_job(bad)
    assert err.value.violations == [
        (
            "job.backoff.initialDelay",
            "must be a valid Duration: nanos from -999999999 to 999999999 with the sign of "
            "seconds, got seconds=1 nanos=-1",
        )
    ]
    good = new_job("ok", grpc_source)
    worse = new_job(
        "ok",
        grpc_source,
        backoff=job_pb2.Backoff(max_delay=duration_pb2.Duration(nanos=2_000_000_000)),
    )
    with pytest.raises(ApiError) as err:
        await grpc_jobs.batch_enqueue_jobs([good, worse])
    assert err.value.violations == [
        (
            "jobs[1].backoff.maxDelay",
            "must be a valid Duration: nanos from -999999999 to 999999999 with the sign of "
            "seconds, got seconds=0 nanos=2000000000",
        )
    ]
    assert await _job_rows(app, tenant) == []


async def test_payload_over_the_cap_is_refused_naming_payload(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    cap = app.settings.job_payload_max_bytes
    fits = "x" * (cap - 2)  # a JSON string: two quotes
    assert (await jobs_client.enqueue_job(new_job("big", source_id, payload=fits))).job
    with pytest.raises(ApiError) as err:
        await jobs_client.enqueue_job(new_job("big", source_id, payload=fits + "y"))
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [
        ("job.payload", f"must be at most {cap} bytes as JSON, got {cap + 1}")
    ]
    assert len(await _job_rows(app, tenant)) == 1


async def test_concurrent_enqueues_of_one_key_insert_one_row(
    app: Application, grpc_jobs: JobsClient, grpc_source: str, tenant: str
) -> None:
    spec = new_job("race", grpc_source, payload={"same": True}, idempotency_key="one-key")
    answers = await asyncio.gather(*(grpc_jobs.enqueue_job(spec) for _ in range(20)))
    assert len({answer.job.job_id for answer in answers}) == 1
    assert sorted(answer.created for answer in answers) == [False] * 19 + [True]
    [row] = await _job_rows(app, tenant)
    assert row.idempotency_key == "one-key"
    assert len(await _history(app, tenant, row.job_id)) == 1


async def _quota(app: Application, tenant: str, job_type: str, **values: Any) -> str:
    quota_id = str(uuid.uuid4())
    row = {"max_active": 0, "burst": 1, "tokens": 1.0, "active": 0, **values}
    async with app.db.transaction() as session:
        await (await session.connection()).execute(
            sa.insert(_quotas).values(quota_id=quota_id, tenant_id=tenant, job_type=job_type, **row)
        )
    return quota_id


async def test_a_plain_enqueue_is_one_statement_on_postgresql(
    app: Application, grpc_jobs: JobsClient, grpc_source: str, tenant: str
) -> None:
    """On PostgreSQL a job whose source is enabled, whose type has no quota and whose
    key is free is written with its event and audit entry by one autocommit statement
    (DESIGN §8: round trips are the enqueue's latency); on SQLite, and whenever the job
    is not plain (here a repeated key), the transaction decides, statement by statement."""
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "INSERT INTO" in statement or "FROM sources" in statement:
            statements.append(statement)

    engine = app.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        job = (
            await grpc_jobs.enqueue_job(new_job("plain.work", grpc_source, idempotency_key="k1"))
        ).job
        plain = len(statements)
        again = await grpc_jobs.enqueue_job(
            new_job("plain.work", grpc_source, idempotency_key="k1")
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    sqlite = app.db.is_sqlite
    # SQLite: sources, then the job, its event, its audit entry.
    assert plain == (4 if sqlite else 1), statements
    assert (again.job.job_id, again.created) == (job.job_id, False)
    [row] = await _job_rows(app, tenant)
    assert (row.job_id, row.status, row.idempotency_key) == (job.job_id, "queued", "k1")
    assert await _history(app, tenant, job.job_id) == [("job.enqueued", {"to": "queued"})]
    created, repeated = await _job_audit(app, tenant)
    assert (created.resource, created.before, repeated.resource) == (
        f"jobs/{job.job_id}",
        None,
        f"jobs/{job.job_id}",
    )
    assert json.loads(created.after)["status"] == "queued"
    assert json.loads(repeated.before) == json.loads(repeated.after)


async def test_a_job_over_its_exhausted_quota_starts_throttled(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    await _quota(app, tenant, "capped", max_active=2, active=2)
    await _quota(app, tenant, "roomy", max_active=2, active=1)
    await _quota(app, tenant, "stopped", max_active=1, active=1, paused=True)
    capped = (await jobs_client.enqueue_job(new_job("capped", source_id))).job
    assert capped.status == "throttled"
    delay = capped.next_eligible_at.ToNanoseconds() - capped.created_at.ToNanoseconds()
    assert delay == int(BUSY_DELAY_S * 1e9)
    eligible = capped.next_eligible_at.ToDatetime(tzinfo=UTC)
    assert await _history(app, tenant, capped.job_id) == [
        ("job.enqueued", {"to": "throttled"}),
        (
            "job.throttled",
            {"to": "throttled", "nextEligibleAt": eligible.isoformat().replace("+00:00", "Z")},
        ),
    ]
    assert (await jobs_client.enqueue_job(new_job("roomy", source_id))).job.status == "queued"
    assert (await jobs_client.enqueue_job(new_job("stopped", source_id))).job.status == "queued"
    later = datetime.now(UTC) + timedelta(hours=1)
    future = (await jobs_client.enqueue_job(new_job("capped", source_id, run_at=later))).job
    assert (future.status, future.next_eligible_at) == ("queued", future.run_at)


# --- batch ------------------------------------------------------------------------------


async def test_batch_results_in_order_each_on_its_own(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    first = await jobs_client.enqueue_job(new_job("b", source_id, idempotency_key="held"))
    response = await jobs_client.batch_enqueue_jobs(
        [
            new_job("b", source_id, payload={"i": 0}),
            new_job("b", "missing-source"),
            new_job("b", source_id, idempotency_key="held"),  # the existing job
            new_job("b", source_id, idempotency_key="held", priority=5),  # another body
            new_job("b", source_id, idempotency_key="twice"),
            new_job("b", source_id, idempotency_key="twice"),  # its first occurrence's job
        ]
    )
    codes = [result.status.code for result in response.results]
    assert codes == [0, 5, 0, 6, 0, 0]  # OK, NOT_FOUND, OK, ALREADY_EXISTS, OK, OK
    results = response.results
    assert results[1].status.message == "source 'missing-source' not found"
    assert results[3].status.message.endswith("with another request body")
    assert not results[1].HasField("job")
    assert results[2].job.job_id == first.job.job_id
    assert results[4].job.job_id == results[5].job.job_id
    assert [r.created for r in results] == [True, False, False, False, True, False]
    rows = await _job_rows(app, tenant)
    assert {row.job_id for row in rows} == {
        first.job.job_id,
        results[0].job.job_id,
        results[4].job.job_id,
    }
    entries = await _job_audit(app, tenant)
    batch = [e for e in entries if e.action == "jobs.batch_enqueue"]
    assert len(batch) == 1
    assert batch[0].resource == "jobs/-"
    assert json.loads(batch[0].after) == {
        "createdJobIds": [results[0].job.job_id, results[4].job.job_id],
        "existingJobIds": [first.job.job_id, results[4].job.job_id],
        "failed": 2,
    }


async def test_a_batch_with_a_malformed_job_is_refused_whole(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    """Every bad field of every bad job named `jobs[i].<field>`; nothing enqueued, no
    audit entry (River's InsertMany, AIP-233): a malformed request is not half-done."""
    with pytest.raises(ApiError) as refused:
        await jobs_client.batch_enqueue_jobs(
            [
                new_job("b", source_id),
                new_job("Bad Type", source_id),
                new_job("b", source_id, max_attempts=-1),
                new_job("", "missing-source"),
            ]
        )
    error = refused.value
    assert error.code == "INVALID_ARGUMENT"
    fields = [field for field, _ in error.violations]
    assert fields == ["jobs[1].jobType", "jobs[2].maxAttempts", "jobs[3].jobType"]
    assert error.message.startswith("jobs[1].jobType: must be a lowercase slug")
    assert "jobs[3].jobType: is required" in error.message
    assert await _job_rows(app, tenant) == []
    assert [e for e in await _job_audit(app, tenant) if e.action == "jobs.batch_enqueue"] == []


async def test_batch_of_1000_is_one_insert_and_1001_is_refused(
    app: Application, grpc_jobs: JobsClient, grpc_source: str, tenant: str
) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO JOBS"):
            statements.append(statement)

    sa.event.listen(app.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        response = await grpc_jobs.batch_enqueue_jobs(
            [new_job("bulk", grpc_source, payload={"i": i}) for i in range(1000)]
        )
    finally:
        sa.event.remove(app.db.engine.sync_engine, "before_cursor_execute", record)
    assert len(statements) == 1
    assert [r.status.code for r in response.results] == [0] * 1000
    assert [r.job.payload.struct_value["i"] for r in response.results] == list(range(1000))
    assert len(await _job_rows(app, tenant)) == 1000
    events = await _rows(app, _events, _events.c.tenant_id == tenant)
    assert len(events) == 1000

    with pytest.raises(ApiError) as err:
        await grpc_jobs.batch_enqueue_jobs([new_job("bulk", grpc_source)] * 1001)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [("jobs", "must hold 1 to 1000 jobs, got 1001")]
    with pytest.raises(ApiError) as err:
        await grpc_jobs.batch_enqueue_jobs([])
    assert err.value.violations == [("jobs", "must hold 1 to 1000 jobs, got 0")]
    assert len(await _job_rows(app, tenant)) == 1000


# --- reading ------------------------------------------------------------------------------


async def test_list_newest_first_with_filters_and_tokens(
    app: Application,
    jobs_client: JobsClient,
    sources_client: SourcesClient,
    source_id: str,
) -> None:
    other = (await sources_client.register_source("other", "manual")).source_id
    made = []
    for i in range(7):
        job_type = "even" if i % 2 == 0 else "odd"
        made.append(
            (await jobs_client.enqueue_job(new_job(job_type, other if i == 6 else source_id))).job
        )
    await jobs_client.cancel_job(made[0].job_id)
    newest_first = sorted(
        made, key=lambda j: (j.created_at.ToNanoseconds(), j.job_id), reverse=True
    )

    everything = [job.job_id async for job in jobs_client.iter_jobs(limit=3)]
    assert everything == [job.job_id for job in newest_first]
    page = await jobs_client.list_jobs(limit=3)
    assert len(page.items) == 3 and page.continuation_token

    evens = await jobs_client.list_jobs(job_type="even")
    assert [j.job_id for j in evens.items] == [
        j.job_id for j in newest_first if j.job_type == "even"
    ]
    assert not evens.HasField("continuation_token")
    canceled = await jobs_client.list_jobs(status="canceled")
    assert [(j.job_id, j.status) for j in canceled.items] == [(made[0].job_id, "canceled")]
    by_source = await jobs_client.list_jobs(source_id=other)
    assert [j.job_id for j in by_source.items] == [made[6].job_id]

    with pytest.raises(ApiError) as err:  # a token is bound to its filters
        await jobs_client.list_jobs(
            job_type="odd", limit=3, continuation_token=page.continuation_token
        )
    assert err.value.reason == "PAGE_TOKEN_MISMATCH"
    with pytest.raises(ApiError) as err:
        await jobs_client.list_jobs(status="running", job_type="Bad", source_id="a b", limit=-1)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == [
        (
            "status",
            "must be one of queued, throttled, leased, succeeded, failed, canceled, "
            "dead_lettered, got 'running'",
        ),
        (
            "jobType",
            "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_' or '-'"
            ", got 'Bad'",
        ),
        ("sourceId", "must be 1 to 64 letters, digits, '.', '_', ':' or '-'"),
    ]


async def test_summary_counts_per_status_and_type(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    empty = await jobs_client.get_job_summary()
    assert empty.totals.total == 0 and list(empty.job_types) == []
    assert not empty.HasField("last_updated_at")
    a1 = (await jobs_client.enqueue_job(new_job("alpha", source_id))).job
    await jobs_client.enqueue_job(new_job("alpha", source_id))
    b1 = (await jobs_client.enqueue_job(new_job("beta", source_id))).job
    canceled = await jobs_client.cancel_job(a1.job_id)
    done = datetime(2030, 1, 1, tzinfo=UTC)
    await _set(app, b1.job_id, status="succeeded", finished_at=done, updated_at=done)

    summary = await jobs_client.get_job_summary()
    assert (summary.totals.queued, summary.totals.canceled, summary.totals.succeeded) == (1, 1, 1)
    assert summary.totals.total == 3
    assert [t.job_type for t in summary.job_types] == ["alpha", "beta"]
    alpha, beta = summary.job_types
    assert (alpha.counts.queued, alpha.counts.canceled, alpha.counts.total) == (1, 1, 2)
    assert (beta.counts.succeeded, beta.counts.total) == (1, 1)
    assert alpha.last_updated_at == canceled.updated_at
    assert beta.last_updated_at.ToDatetime(tzinfo=UTC) == done
    assert summary.last_updated_at == beta.last_updated_at


# --- cancel and replay --------------------------------------------------------------------


async def test_cancel_a_queued_job_then_again(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    job = (await jobs_client.enqueue_job(new_job("c", source_id))).job
    canceled = await jobs_client.cancel_job(job.job_id)
    assert canceled.status == "canceled"
    assert not canceled.HasField("next_eligible_at")
    assert canceled.updated_at.ToNanoseconds() >= job.updated_at.ToNanoseconds()
    again = await jobs_client.cancel_job(job.job_id)
    assert again == canceled
    [row] = await _job_rows(app, tenant)
    assert (row.status, _aware(row.finished_at)) == (
        "canceled",
        canceled.updated_at.ToDatetime(tzinfo=UTC),
    )
    assert await _history(app, tenant, job.job_id) == [
        ("job.enqueued", {"to": "queued"}),
        ("job.canceled", {"from": "queued", "to": "canceled", "attempt": 0}),
    ]
    history = (await jobs_client.get_job(job.job_id)).history
    assert [e.type for e in history] == ["job.enqueued", "job.canceled"]
    assert int(history[0].event_id) < int(history[1].event_id)
    actions = [e.action for e in await _job_audit(app, tenant)]
    assert actions == ["jobs.enqueue", "jobs.cancel", "jobs.cancel"]


@pytest.mark.parametrize("status", ["succeeded", "dead_lettered"])
async def test_cancel_a_finished_job_is_failed_precondition(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str, status: str
) -> None:
    job = (await jobs_client.enqueue_job(new_job("c", source_id))).job
    await _set(app, job.job_id, status=status, finished_at=datetime.now(UTC))
    with pytest.raises(ApiError) as err:
        await jobs_client.cancel_job(job.job_id)
    assert (err.value.code, err.value.reason) == ("FAILED_PRECONDITION", "JOB_STATUS_CONFLICT")
    assert err.value.message == f"job is {status}; cannot cancel it"
    assert err.value.http_status == (409 if _rest(jobs_client) else None)
    assert [t for t, _ in await _history(app, tenant, job.job_id)] == ["job.enqueued"]


async def test_cancel_a_leased_job_releases_its_quota_slot(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    job = (await jobs_client.enqueue_job(new_job("slotted", source_id))).job
    quota_id = await _quota(app, tenant, "slotted", max_active=5, active=2)
    lease_end = datetime.now(UTC) + timedelta(minutes=5)
    await _set(
        app,
        job.job_id,
        status="leased",
        attempts=1,
        lease_id="lease-1",
        lease_owner="w-1",
        lease_expires_at=lease_end,
        next_eligible_at=None,
        quota_id=quota_id,
    )
    canceled = await jobs_client.cancel_job(job.job_id)
    assert (canceled.status, canceled.attempts) == ("canceled", 1)
    assert not canceled.HasField("lease_expires_at")
    [row] = await _job_rows(app, tenant)
    assert (row.quota_id, row.lease_id) == (None, "lease-1")
    [quota] = await _rows(app, _quotas, _quotas.c.quota_id == quota_id)
    assert quota.active == 1
    assert (await _history(app, tenant, job.job_id))[-1] == (
        "job.canceled",
        {"from": "leased", "to": "canceled", "attempt": 1},
    )
    assert (await jobs_client.cancel_job(job.job_id)).status == "canceled"
    [quota] = await _rows(app, _quotas, _quotas.c.quota_id == quota_id)
    assert quota.active == 1  # released once


async def test_replay_clones_a_finished_job(
    app: Application, jobs_client: JobsClient, source_id: str, tenant: str
) -> None:
    original = (
        await jobs_client.enqueue_job(
            new_job(
                "r",
                source_id,
                payload={"a": 1},
                priority=9,
                max_attempts=5,
                idempotency_key="replay-me",
                pack_run_id="pack-1",
            )
        )
    ).job
    with pytest.raises(ApiError) as err:
        await jobs_client.replay_job(original.job_id)
    assert (err.value.code, err.value.message) == (
        "FAILED_PRECONDITION",
        "job is queued; only a finished job can be replayed",
    )
    assert err.value.http_status == (409 if _rest(jobs_client) else None)
    await _set(app, original.job_id, status="canceled", attempts=5, finished_at=datetime.now(UTC))
    clone = await jobs_client.replay_job(original.job_id)
    assert clone.job_id != original.job_id
    assert clone.replay_of == original.job_id
    assert (clone.status, clone.attempts, clone.priority, clone.max_attempts) == (
        "queued",
        0,
        9,
        5,
    )
    assert (clone.job_type, clone.source_id, clone.pack_run_id) == ("r", source_id, "pack-1")
    assert clone.payload == original.payload
    assert clone.backoff == original.backoff
    assert not clone.HasField("idempotency_key")
    assert await _history(app, tenant, original.job_id) == [
        ("job.enqueued", {"to": "queued"}),
        ("job.replayed", {"replayJobId": clone.job_id}),
    ]
    assert await _history(app, tenant, clone.job_id) == [
        ("job.enqueued", {"to": "queued", "replayOf": original.job_id}),
    ]
    assert len(await _job_rows(app, tenant)) == 2


async def test_tenants_never_see_or_change_each_others_jobs(
    jobs_client: JobsClient, source_id: str, tokens: TokenFactory, grpc_target: str
) -> None:
    mine = (await jobs_client.enqueue_job(new_job("private", source_id))).job
    other = f"x-{uuid.uuid4().hex[:8]}"
    transport = GrpcTransport(grpc_target)
    try:
        stranger = JobsClient(
            transport,
            CallerHeaders(
                tenant=other, access_token=await tokens.token(other), operator_reason="probe"
            ),
        )
        assert list((await stranger.list_jobs()).items) == []
        assert (await stranger.get_job_summary()).totals.total == 0
        for attempt in (stranger.get_job, stranger.cancel_job, stranger.replay_job):
            with pytest.raises(ApiError) as err:
                await attempt(mine.job_id)
            assert (err.value.code, err.value.message) == (
                "NOT_FOUND",
                f"job '{mine.job_id}' not found",
            )
        with pytest.raises(ApiError) as err:
            await stranger.enqueue_job(new_job("private", source_id))
        assert err.value.code == "NOT_FOUND"
    finally:
        await transport.close()
    assert (await jobs_client.get_job(mine.job_id)).job.status == "queued"


# --- pruning ------------------------------------------------------------------------------


async def test_pruning_deletes_only_finished_jobs_past_retention_in_batches(
    app: Application, grpc_jobs: JobsClient, grpc_source: str, tenant: str
) -> None:
    # An hour's retention: other tests' jobs finished minutes ago, and the server's own
    # pruner (7 days) leaves these rows alone.
    now = datetime.now(UTC)
    retention = timedelta(hours=1)
    made = [
        (await grpc_jobs.enqueue_job(new_job("p", grpc_source, idempotency_key=f"k{i}"))).job
        for i in range(8)
    ]
    old = now - retention - timedelta(seconds=1)
    fresh = now - retention + timedelta(seconds=1)
    plan = {
        0: ("succeeded", old),
        1: ("canceled", old),
        2: ("dead_lettered", old),
        3: ("succeeded", old),
        4: ("canceled", old),
        5: ("succeeded", fresh),  # not yet past retention
        6: ("queued", None),  # waiting, however old
    }
    for index, (status, finished) in plan.items():
        await _set(app, made[index].job_id, status=status, finished_at=finished)
    await _set(app, made[7].job_id, created_at=now - timedelta(days=30))
    await grpc_jobs.cancel_job(made[4].job_id)  # already canceled: unchanged
    minute = int(now.timestamp()) // 60
    async with app.db.transaction() as session:
        await (await session.connection()).execute(
            sa.insert(_minutes),
            [{"quota_id": "q-prune", "minute": minute - m, "count": 1} for m in (0, 59, 60, 61)],
        )

    report = await prune_once(app.db, now=now, retention=retention, batch_size=2)
    assert report.batches == [2, 2, 1]
    assert report.events == 5
    left = {row.job_id for row in await _job_rows(app, tenant)}
    assert left == {made[5].job_id, made[6].job_id, made[7].job_id}
    for job in made[:5]:
        assert await _history(app, tenant, job.job_id) == []
    assert len(await _history(app, tenant, made[5].job_id)) == 1
    minutes = await _rows(app, _minutes, _minutes.c.quota_id == "q-prune")
    assert sorted(minute - row.minute for row in minutes) == [0, 59]
    # A pruned job's key is free again.
    again = await grpc_jobs.enqueue_job(new_job("p", grpc_source, idempotency_key="k0"))
    assert again.created is True
    assert (await prune_once(app.db, now=now, retention=retention, batch_size=2)).batches == []
