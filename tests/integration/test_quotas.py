"""Quotas end to end (issue 9 point 1): the same scenarios over gRPC, REST and in-process,
on SQLite and PostgreSQL, with the stored rows, audit entries and events they leave."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2

from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.transports.rest import RestTransport
from orchestrator.jobengine.v1 import quota_pb2, worker_service_pb2, worker_service_pb2_grpc
from server.app import Application
from server.domain.leasing import THROTTLE_MAX_S, LeaseRequest
from server.storage.repositories.leases import SqlLeases
from server.storage.tables import (
    AuditEntryRow,
    EventRow,
    JobRow,
    QuotaMinuteRow,
    QuotaRow,
    table_of,
)
from server.storage.wakeups import Wakeups
from tests.support.auth import TokenFactory
from tests.support.clock import TestClock
from tests.support.quotas import QuotasClient

QUOTA_SCOPES = ("orch:quota",)
_quotas = table_of(QuotaRow)
_minutes = table_of(QuotaMinuteRow)
_audit = table_of(AuditEntryRow)
_events = table_of(EventRow)
_jobs = table_of(JobRow)


@pytest.fixture
async def quota_token(tokens: TokenFactory, tenant: str) -> str:
    return await tokens.token(
        tenant, QUOTA_SCOPES, quota_reason="capacity review", quota_ticket="CAP-9"
    )


@pytest.fixture
def quotas(transport: Transport, tenant: str, quota_token: str) -> QuotasClient:
    headers = CallerHeaders(tenant=tenant, operator_reason="test run", access_token=quota_token)
    return QuotasClient(transport, headers)


@pytest.fixture
async def grpc_quotas(
    grpc_target: str, tenant: str, quota_token: str
) -> AsyncIterator[QuotasClient]:
    transport = GrpcTransport(grpc_target)
    headers = CallerHeaders(tenant=tenant, operator_reason="test run", access_token=quota_token)
    try:
        yield QuotasClient(transport, headers)
    finally:
        await transport.close()


def _rest(client: QuotasClient) -> bool:
    return isinstance(client.transport, RestTransport)


async def _client_id(tokens: TokenFactory, tenant: str) -> str:
    return (await tokens.client(tenant, QUOTA_SCOPES)).client.client_id


async def _rows(app: Application, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[sa.Row]:  # type: ignore[type-arg]
    async with app.db.read() as conn:
        return list((await conn.execute(sa.select(table).where(*where))).all())


def _settings(etag: str) -> str:
    """The settings part of a quota's etag (`v{version}-{usage digest}`), which the
    conditions compare; the digest moves with usage."""
    version, dash, digest = etag.partition("-")
    assert dash and len(digest) == 8, etag
    return version


# --- create, get -------------------------------------------------------------------------


async def test_create_then_get_round_trips(
    quotas: QuotasClient, app: Application, tenant: str, tokens: TokenFactory
) -> None:
    created = await quotas.create_quota(
        "image.scan", max_active=4, max_per_hour=600, burst=8, refill_per_second=2.5
    )
    assert uuid.UUID(created.quota_id)
    assert (created.job_type, created.max_active, created.max_per_hour) == ("image.scan", 4, 600)
    assert (created.burst, created.refill_per_second) == (8, 2.5)
    assert created.paused is False
    assert not created.HasField("pause_reason")
    assert created.usage == quota_pb2.QuotaUsage(active=0, tokens=8.0, last_hour=0)
    assert _settings(created.etag) == "v1"
    assert created.created_at == created.updated_at
    assert created.updated_by == await _client_id(tokens, tenant)

    fetched = await quotas.get_quota(created.quota_id)
    assert fetched == created  # a full bucket stays full: nothing has moved

    [row] = await _rows(app, _quotas, _quotas.c.quota_id == created.quota_id)
    assert row.tenant_id == tenant
    assert (row.max_active, row.max_per_hour, row.burst, row.refill_per_second) == (4, 600, 8, 2.5)
    assert (row.paused, row.pause_reason, row.active, row.tokens, row.version) == (
        False,
        None,
        0,
        8.0,
        1,
    )


async def test_duplicate_job_type_is_already_exists(quotas: QuotasClient) -> None:
    await quotas.create_quota("dup-type", burst=1)
    with pytest.raises(ApiError) as err:
        await quotas.create_quota("dup-type", burst=3)
    assert err.value.code == "ALREADY_EXISTS"
    assert err.value.reason == "QUOTA_EXISTS"
    assert err.value.message == "a quota with jobType 'dup-type' already exists in this tenant"
    assert err.value.http_status == (409 if _rest(quotas) else None)


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        (
            {"job_type": "", "burst": 1},
            [("jobType", "is required")],
        ),
        (
            {"job_type": "Bad Type", "burst": 1},
            [
                (
                    "jobType",
                    "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', "
                    "'_' or '-', got 'Bad Type'",
                )
            ],
        ),
        (
            {"job_type": "neg", "max_active": -1, "max_per_hour": -2, "burst": 0},
            [
                ("maxActive", "must not be negative, got -1"),
                ("maxPerHour", "must not be negative, got -2"),
                ("burst", "must be at least 1, got 0"),
            ],
        ),
        (
            {"job_type": "neg-rate", "burst": 1, "refill_per_second": -0.5},
            [("refillPerSecond", "must not be negative, got -0.5")],
        ),
        (
            {"job_type": "slow-rate", "burst": 1, "refill_per_second": 1e-12},
            [
                (
                    "refillPerSecond",
                    "must be 0 (no bucket) or at least 1e-06 tokens per second (one per "
                    "11.6 days), got 1e-12",
                )
            ],
        ),
        (
            {
                "job_type": "too-big",
                "max_active": 10_001,
                "max_per_hour": 1_000_001,
                "burst": 10_001,
                "refill_per_second": 10_000.5,
            },
            [
                ("maxActive", "must be at most 10000 (the policy maximum), got 10001"),
                ("maxPerHour", "must be at most 1000000 (the policy maximum), got 1000001"),
                ("burst", "must be at most 10000 (the policy maximum), got 10001"),
                ("refillPerSecond", "must be at most 10000 (the policy maximum), got 10000.5"),
            ],
        ),
    ],
    ids=["missing-type", "bad-type", "negative", "negative-rate", "slow-rate", "above-policy"],
)
async def test_bad_settings_name_every_field_and_write_nothing(
    quotas: QuotasClient,
    app: Application,
    tenant: str,
    fields: dict[str, object],
    violations: list[tuple[str, str]],
) -> None:
    settings = dict(fields)  # the parameter is shared by every run
    job_type = str(settings.pop("job_type"))
    with pytest.raises(ApiError) as err:
        await quotas.create_quota(job_type, **settings)  # type: ignore[arg-type]
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.violations == violations
    assert err.value.message == "; ".join(f"{f}: {d}" for f, d in violations)
    assert err.value.http_status == (400 if _rest(quotas) else None)
    assert await _rows(app, _quotas, _quotas.c.tenant_id == tenant) == []
    assert await _rows(app, _audit, _audit.c.tenant_id == tenant) == []


async def test_not_a_finite_rate_is_invalid_over_grpc(grpc_quotas: QuotasClient) -> None:
    with pytest.raises(ApiError) as err:
        await grpc_quotas.create_quota("nan-rate", burst=1, refill_per_second=math.nan)
    assert err.value.violations == [
        ("refillPerSecond", "must be a finite number of tokens per second, got nan")
    ]


async def test_unknown_quota_is_not_found(quotas: QuotasClient) -> None:
    for quota_id in ("no-such-quota", str(uuid.uuid4())):
        with pytest.raises(ApiError) as err:
            await quotas.get_quota(quota_id)
        assert err.value.code == "NOT_FOUND"
        assert err.value.reason == "QUOTA_NOT_FOUND"
        assert err.value.message == f"quota {quota_id!r} not found"
        assert err.value.http_status == (404 if _rest(quotas) else None)


# --- update, pause, resume, delete -----------------------------------------------------


async def test_update_replaces_limits_and_moves_the_etag(
    quotas: QuotasClient, app: Application, tenant: str
) -> None:
    created = await quotas.create_quota("render", max_active=2, burst=4, refill_per_second=1.0)
    wanted = quota_pb2.Quota()
    wanted.CopyFrom(created)
    wanted.max_active, wanted.max_per_hour, wanted.burst = 5, 100, 2
    wanted.refill_per_second = 0.5
    updated = await quotas.update_quota(wanted)
    assert (updated.max_active, updated.max_per_hour, updated.burst) == (5, 100, 2)
    assert updated.refill_per_second == 0.5
    assert _settings(updated.etag) == "v2"
    assert updated.usage.tokens == 2.0  # the full bucket, capped at the new burst
    assert updated.created_at == created.created_at
    assert updated.updated_at.ToDatetime() >= created.updated_at.ToDatetime()

    # The same limits again: audited, not rewritten; the etag stays.
    again = await quotas.update_quota(updated)
    assert again.etag == updated.etag
    assert again.updated_at == updated.updated_at

    # The etag read before the first update is stale now.
    with pytest.raises(ApiError) as err:
        await quotas.update_quota(wanted)
    assert err.value.code == "ABORTED"
    assert err.value.reason == "QUOTA_ETAG_MISMATCH"
    assert err.value.message == (
        f"quota {created.quota_id!r} changed since etag {created.etag!r} was read (its"
        " settings are now at 'v2'); read it again and retry"
    )
    assert err.value.http_status == (412 if _rest(quotas) else None)

    [row] = await _rows(app, _quotas, _quotas.c.quota_id == created.quota_id)
    assert (row.max_active, row.max_per_hour, row.burst, row.version) == (5, 100, 2, 2)
    entries = await _rows(app, _audit, _audit.c.tenant_id == tenant)
    assert sorted(e.action for e in entries) == ["quotas.create", "quotas.update", "quotas.update"]


async def test_update_cannot_change_the_job_type_or_reach_another_quota(
    quotas: QuotasClient,
) -> None:
    created = await quotas.create_quota("fixed-type", burst=1)
    other = quota_pb2.Quota(quota_id=created.quota_id, job_type="another", burst=1)
    with pytest.raises(ApiError) as err:
        await quotas.update_quota(other)
    assert err.value.violations == [
        (
            "jobType",
            f"is immutable: quota {created.quota_id!r} governs 'fixed-type', got 'another'",
        )
    ]
    missing = quota_pb2.Quota(quota_id=str(uuid.uuid4()), burst=1)
    with pytest.raises(ApiError) as err:
        await quotas.update_quota(missing)
    assert err.value.code == "NOT_FOUND"
    bad = quota_pb2.Quota(quota_id=created.quota_id, burst=0, max_active=-3)
    with pytest.raises(ApiError) as err:
        await quotas.update_quota(bad)
    assert [field for field, _ in err.value.violations] == ["maxActive", "burst"]
    assert (await quotas.get_quota(created.quota_id)).etag == created.etag


async def test_pause_with_a_reason_then_resume(quotas: QuotasClient) -> None:
    created = await quotas.create_quota("pausable", burst=1)
    paused = await quotas.pause_quota(created.quota_id, "registry outage")
    assert (paused.paused, paused.pause_reason) == (True, "registry outage")
    assert _settings(paused.etag) == "v2"
    # Pausing again with the same reason changes nothing; another reason replaces it.
    assert (await quotas.pause_quota(created.quota_id, "registry outage")).etag == paused.etag
    repaused = await quotas.pause_quota(created.quota_id)  # the operator reason header's
    assert (repaused.pause_reason, _settings(repaused.etag)) == ("test run", "v3")
    assert (await quotas.get_quota(created.quota_id)).paused is True

    resumed = await quotas.resume_quota(created.quota_id)
    assert (resumed.paused, resumed.HasField("pause_reason")) == (False, False)
    assert _settings(resumed.etag) == "v4"
    assert (await quotas.resume_quota(created.quota_id)).etag == resumed.etag  # a no-op


async def test_pause_reason_longer_than_256_is_invalid(quotas: QuotasClient) -> None:
    created = await quotas.create_quota("long-reason", burst=1)
    with pytest.raises(ApiError) as err:
        await quotas.pause_quota(created.quota_id, "r" * 257)
    assert err.value.violations == [("reason", "must be at most 256 characters, got 257")]
    assert (await quotas.get_quota(created.quota_id)).paused is False


async def test_delete_with_and_without_etag(
    grpc_quotas: QuotasClient, app: Application, tenant: str
) -> None:
    first = await grpc_quotas.create_quota("gone-a", burst=1)
    second = await grpc_quotas.create_quota("gone-b", burst=1)
    await grpc_quotas.pause_quota(second.quota_id, "hold")
    with pytest.raises(ApiError) as err:
        await grpc_quotas.delete_quota(second.quota_id, etag="v1")
    assert err.value.code == "ABORTED"
    await grpc_quotas.delete_quota(second.quota_id, etag="v2")
    await grpc_quotas.delete_quota(first.quota_id)
    for quota_id in (first.quota_id, second.quota_id):
        with pytest.raises(ApiError) as err:
            await grpc_quotas.delete_quota(quota_id)
        assert err.value.code == "NOT_FOUND"
    assert await _rows(app, _quotas, _quotas.c.tenant_id == tenant) == []
    # The job type is free again.
    assert _settings((await grpc_quotas.create_quota("gone-a", burst=1)).etag) == "v1"


# --- audit entries and events -----------------------------------------------------------


async def test_every_mutation_is_audited_with_the_tokens_justification(
    grpc_quotas: QuotasClient, app: Application, tenant: str, tokens: TokenFactory
) -> None:
    grpc_quotas.headers.operator_ticket = "OPS-77"
    created = await grpc_quotas.create_quota("audited", max_active=1, burst=2)
    changed = quota_pb2.Quota(quota_id=created.quota_id, max_active=3, burst=2)
    await grpc_quotas.update_quota(changed)
    await grpc_quotas.pause_quota(created.quota_id, "maintenance")
    await grpc_quotas.resume_quota(created.quota_id)
    await grpc_quotas.delete_quota(created.quota_id)

    entries = await _rows(app, _audit, _audit.c.tenant_id == tenant)
    entries.sort(key=lambda e: e.created_at)
    assert [e.action for e in entries] == [
        "quotas.create",
        "quotas.update",
        "quotas.pause",
        "quotas.resume",
        "quotas.delete",
    ]
    actor = await _client_id(tokens, tenant)
    for entry in entries:
        assert entry.resource == f"quotas/{created.quota_id}"
        assert (entry.actor, entry.reason, entry.ticket) == (actor, "test run", "OPS-77")
        assert (entry.quota_reason, entry.quota_ticket) == ("capacity review", "CAP-9")
    snapshot = {
        "quotaId": created.quota_id,
        "jobType": "audited",
        "maxActive": 1,
        "maxPerHour": 0,
        "burst": 2,
        "refillPerSecond": 0.0,
        "paused": False,
        "pauseReason": None,
    }
    assert entries[0].before is None
    assert json.loads(entries[0].after) == snapshot
    assert json.loads(entries[1].after) == {**snapshot, "maxActive": 3}
    assert json.loads(entries[2].after) == {
        **snapshot,
        "maxActive": 3,
        "paused": True,
        "pauseReason": "maintenance",
    }
    assert json.loads(entries[4].before) == {**snapshot, "maxActive": 3}
    assert entries[4].after is None

    events = await _rows(app, _events, _events.c.subject == f"quotas/{created.quota_id}")
    assert [e.type for e in sorted(events, key=lambda e: e.event_id)] == [
        "quota.created",
        "quota.updated",
        "quota.paused",
        "quota.resumed",
        "quota.deleted",
    ]
    assert {e.tenant_id for e in events} == {tenant}


# --- listing --------------------------------------------------------------------------


async def test_list_filters_order_and_pages(quotas: QuotasClient) -> None:
    names = ["zeta", "alpha", "mid.one", "beta-2", "gamma_x", "delta", "epsilon"]
    made = {}
    for name in names:
        made[name] = await quotas.create_quota(name, burst=1)
    for name in ("beta-2", "delta", "zeta"):
        await quotas.pause_quota(made[name].quota_id, "hold")

    everything = [q.job_type async for q in quotas.iter_quotas(limit=3)]
    assert everything == sorted(names)
    paused_pages = [page async for page in quotas.iter_quotas(paused=True, limit=2).pages()]
    assert [[q.job_type for q in p.items] for p in paused_pages] == [["beta-2", "delta"], ["zeta"]]
    assert not paused_pages[-1].HasField("continuation_token")
    active = await quotas.list_quotas(paused=False)
    assert [q.job_type for q in active.items] == ["alpha", "epsilon", "gamma_x", "mid.one"]
    one = await quotas.list_quotas(job_type="delta")
    assert [(q.job_type, q.paused, q.pause_reason) for q in one.items] == [("delta", True, "hold")]
    assert list((await quotas.list_quotas(job_type="nothing-here")).items) == []


async def test_page_tokens_are_bound_to_filters_and_signed(quotas: QuotasClient) -> None:
    for name in ("p1", "p2", "p3"):
        await quotas.create_quota(name, burst=1)
    first = await quotas.list_quotas(limit=1)
    token = first.continuation_token
    with pytest.raises(ApiError) as err:
        await quotas.list_quotas(limit=1, paused=False, continuation_token=token)
    assert (err.value.code, err.value.reason) == ("INVALID_ARGUMENT", "PAGE_TOKEN_MISMATCH")
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(ApiError) as err:
        await quotas.list_quotas(limit=1, continuation_token=tampered)
    assert (err.value.code, err.value.reason) == ("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN")
    assert err.value.violations[0][0] == "continuationToken"
    with pytest.raises(ApiError) as err:
        await quotas.list_quotas(limit=-1)
    assert err.value.violations == [
        ("limit", "must not be negative (0 means the default of 50; above 200 means 200), got -1")
    ]
    with pytest.raises(ApiError) as err:
        await quotas.list_quotas(job_type="NOT OK")
    assert [field for field, _ in err.value.violations] == ["jobType"]


# --- tenancy ----------------------------------------------------------------------------


async def test_another_tenant_neither_sees_nor_changes_a_quota(
    quotas: QuotasClient, grpc_target: str, tokens: TokenFactory
) -> None:
    mine = await quotas.create_quota("private", max_active=1, burst=1)
    elsewhere = f"x-{uuid.uuid4().hex[:8]}"
    transport = GrpcTransport(grpc_target)
    token = await tokens.token(elsewhere, QUOTA_SCOPES, quota_reason="probe")
    stranger = QuotasClient(
        transport, CallerHeaders(tenant=elsewhere, access_token=token, operator_reason="probe")
    )
    try:
        assert list((await stranger.list_quotas()).items) == []
        assert list((await stranger.summary()).quotas) == []
        changed = quota_pb2.Quota(quota_id=mine.quota_id, max_active=9, burst=9)
        attempts = (
            stranger.get_quota(mine.quota_id),
            stranger.update_quota(changed),
            stranger.pause_quota(mine.quota_id),
            stranger.resume_quota(mine.quota_id),
            stranger.delete_quota(mine.quota_id),
        )
        for attempt in attempts:
            with pytest.raises(ApiError) as err:
                await attempt
            assert (err.value.code, err.value.reason) == ("NOT_FOUND", "QUOTA_NOT_FOUND")
        # The same job type is the other tenant's own to limit.
        assert (await stranger.create_quota("private", burst=1)).job_type == "private"
    finally:
        await transport.close()
    assert await quotas.get_quota(mine.quota_id) == mine


# --- summary ----------------------------------------------------------------------------


def _lease_request(tenant: str, *job_types: str) -> LeaseRequest:
    """What a LeaseJobs call of up to 10 jobs of `job_types` asks, without waiting."""
    return LeaseRequest(
        tenant_id=tenant,
        worker_id="w-1",
        job_types=job_types,
        max_jobs=10,
        wait_s=0,
        lease_s=30,
        trace_id=None,
    )


async def _job(app: Application, tenant: str, job_type: str, status: str) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    async with app.db.transaction() as session:
        session.add(
            JobRow(
                job_id=str(uuid.uuid4()),
                tenant_id=tenant,
                job_type=job_type,
                source_id="src",
                status=status,
                max_attempts=3,
                backoff_initial_s=1,
                backoff_max_s=60,
                backoff_multiplier=2,
                backoff_jitter=0.1,
                run_at=now,
                next_eligible_at=now,
            )
        )


async def test_summary_reports_usage_backpressure_and_totals(
    quotas: QuotasClient, app: Application, tenant: str, clock: TestClock
) -> None:
    calm = await quotas.create_quota("calm", max_active=5, max_per_hour=100, burst=5)
    busy = await quotas.create_quota("busy", max_active=2, burst=3)
    hourly = await quotas.create_quota("hourly", max_per_hour=10, burst=1)
    drained = await quotas.create_quota("drained", burst=10, refill_per_second=2.0)
    held = await quotas.create_quota("held", burst=1)
    await quotas.pause_quota(held.quota_id, "freeze")

    # Usage as the lease path leaves it (QuotaRow's accounting model).
    minute = math.floor(clock.wall()) // 60
    future = datetime.fromtimestamp(clock.wall(), UTC) + timedelta(hours=1)
    async with app.db.transaction() as session:
        conn = await session.connection()
        await conn.execute(
            sa.update(_quotas).where(_quotas.c.quota_id == busy.quota_id).values(active=2)
        )
        await conn.execute(
            sa.update(_quotas).where(_quotas.c.quota_id == calm.quota_id).values(active=1)
        )
        # A bucket stamped ahead of the clock has gained nothing yet: exactly 0.25.
        await conn.execute(
            sa.update(_quotas)
            .where(_quotas.c.quota_id == drained.quota_id)
            .values(tokens=0.25, tokens_at=future)
        )
        await conn.execute(
            sa.insert(_minutes),
            [
                {"quota_id": hourly.quota_id, "minute": minute, "count": 4},
                {"quota_id": hourly.quota_id, "minute": minute - 58, "count": 6},
                {"quota_id": hourly.quota_id, "minute": minute - 61, "count": 100},
                {"quota_id": calm.quota_id, "minute": minute - 1, "count": 7},
            ],
        )
    other_tenant = f"o-{uuid.uuid4().hex[:8]}"
    await _job(app, tenant, "calm", "throttled")
    await _job(app, tenant, "calm", "throttled")
    await _job(app, tenant, "calm", "queued")
    await _job(app, other_tenant, "calm", "throttled")

    summary = await quotas.summary()
    lines = {line.job_type: line for line in summary.quotas}
    assert [line.job_type for line in summary.quotas] == [
        "busy",
        "calm",
        "drained",
        "held",
        "hourly",
    ]
    got = {
        name: (
            line.paused,
            line.active,
            line.max_active,
            line.tokens,
            line.burst,
            line.last_hour,
            line.max_per_hour,
            line.throttled_jobs,
            line.backpressure,
        )
        for name, line in lines.items()
    }
    assert got == {
        "busy": (False, 2, 2, 3.0, 3, 0, 0, 0, True),  # at maxActive
        "calm": (False, 1, 5, 5.0, 5, 7, 100, 2, True),  # jobs throttled
        "drained": (False, 0, 0, 0.25, 10, 0, 0, 0, True),  # less than a token
        "held": (True, 0, 0, 1.0, 1, 0, 0, 0, True),  # paused
        "hourly": (False, 0, 0, 1.0, 1, 10, 10, 0, True),  # at maxPerHour
    }
    assert lines["calm"].quota_id == calm.quota_id
    totals = summary.totals
    assert (totals.quotas, totals.paused, totals.backpressured) == (5, 1, 5)
    assert (totals.active, totals.last_hour, totals.throttled_jobs) == (3, 17, 2)
    assert abs(summary.generated_at.ToDatetime(UTC).timestamp() - clock.wall()) < 5

    # The same usage through the quota itself.
    fetched = await quotas.get_quota(hourly.quota_id)
    assert fetched.usage == quota_pb2.QuotaUsage(active=0, tokens=1.0, last_hour=10)
    listed = await quotas.list_quotas(job_type="drained")
    assert listed.items[0].usage == quota_pb2.QuotaUsage(active=0, tokens=0.25, last_hour=0)

    # Without pressure: nothing is reported as held back.
    await quotas.resume_quota(held.quota_id)
    line = {q.job_type: q for q in (await quotas.summary()).quotas}["held"]
    assert (line.paused, line.backpressure) == (False, False)


# --- pause and resume as the lease sees them --------------------------------------------


async def test_pause_stops_leasing_its_job_type_and_resume_restarts_it(
    grpc_quotas: QuotasClient, app: Application, tenant: str
) -> None:
    quota = await grpc_quotas.create_quota("leasable", max_active=5, burst=5)
    for job_type in ("leasable", "leasable", "other"):
        await _job(app, tenant, job_type, "queued")
    leases = SqlLeases(app.db, Wakeups())  # the lease statement the WorkerService runs
    request = _lease_request(tenant, "leasable", "other")

    await grpc_quotas.pause_quota(quota.quota_id, "hold the scans")
    leased = (await leases.lease(request, leases.now())).jobs
    assert [row.job_type for row in leased] == ["other"]
    paused = await grpc_quotas.get_quota(quota.quota_id)
    assert paused.usage == quota_pb2.QuotaUsage(active=0, tokens=5.0, last_hour=0)

    await grpc_quotas.resume_quota(quota.quota_id)
    leased = (await leases.lease(request, leases.now())).jobs
    assert [row.job_type for row in leased] == ["leasable", "leasable"]
    resumed = await grpc_quotas.get_quota(quota.quota_id)
    assert (resumed.usage.active, resumed.usage.last_hour) == (2, 2)
    assert resumed.usage.tokens == 5.0  # the bucket is off (refillPerSecond 0)
    assert _settings(resumed.etag) == "v3"  # usage never moves the settings part


async def test_a_rate_too_slow_for_a_timestamp_throttles_and_never_fails_the_lease(
    grpc_quotas: QuotasClient, app: Application, tenant: str
) -> None:
    """A quota stored with a refill rate from before REFILL_MIN (1e-300 tokens/s puts
    the next token past any timestamp): the lease failed with INTERNAL for its job type
    and every type leased with it. Now the lease takes the token there is, and the jobs
    left wait THROTTLE_MAX_S (366 days) at most; the other type is leased alongside."""
    quota = await grpc_quotas.create_quota("glacial", burst=1, refill_per_second=1.0)
    async with app.db.engine.begin() as conn:  # as an older server stored it
        await conn.execute(
            sa.update(_quotas)
            .where(_quotas.c.quota_id == quota.quota_id)
            .values(refill_per_second=1e-300)
        )
    for job_type in ("glacial", "glacial", "glacial", "other"):
        await _job(app, tenant, job_type, "queued")
    leases = SqlLeases(app.db, Wakeups())
    request = _lease_request(tenant, "glacial", "other")
    now = leases.now()
    leased = (await leases.lease(request, now)).jobs
    assert sorted(row.job_type for row in leased) == ["glacial", "other"]
    held = await _rows(app, _jobs, _jobs.c.tenant_id == tenant, _jobs.c.status == "throttled")
    assert len(held) == 2
    for row in held:
        eligible = row.next_eligible_at.replace(tzinfo=UTC)
        ahead = (eligible - now).total_seconds()  # the statement's own clock: microseconds
        assert abs(ahead - THROTTLE_MAX_S) < 1.0, ahead


@pytest.mark.parametrize("change", ["raise", "delete"])
async def test_raising_or_deleting_a_quota_releases_the_jobs_it_throttled(
    grpc_quotas: QuotasClient, app: Application, tenant: str, change: str
) -> None:
    """Jobs throttled by a slow bucket waited out the delay it had set (11 days here)
    after an operator lifted the rate limit or deleted the quota; now the next lease
    judges them by the quota as it stands, or by none."""
    quota = await grpc_quotas.create_quota("held", burst=1, refill_per_second=0.000001)
    for _ in range(3):
        await _job(app, tenant, "held", "queued")
    leases = SqlLeases(app.db, Wakeups(), app.clocks.wall)  # the server's clock
    request = _lease_request(tenant, "held")
    now = leases.now()
    assert len((await leases.lease(request, now)).jobs) == 1
    held = await _rows(app, _jobs, _jobs.c.tenant_id == tenant, _jobs.c.status == "throttled")
    assert len(held) == 2
    for row in held:
        assert row.next_eligible_at.replace(tzinfo=UTC) - now > timedelta(days=5)
    if change == "raise":  # the rate limit off (refillPerSecond 0), as the README's example
        raised = await grpc_quotas.update_quota(
            quota_pb2.Quota(quota_id=quota.quota_id, job_type="held", burst=10)
        )
        assert raised.refill_per_second == 0.0
    else:
        await grpc_quotas.delete_quota(quota.quota_id)
    leased = (await leases.lease(request, leases.now())).jobs
    assert sorted(row.job_id for row in leased) == sorted(row.job_id for row in held)
    assert await _rows(app, _jobs, _jobs.c.tenant_id == tenant, _jobs.c.status == "throttled") == []


async def test_an_unchanged_update_leaves_throttled_jobs_waiting(
    grpc_quotas: QuotasClient, app: Application, tenant: str
) -> None:
    quota = await grpc_quotas.create_quota("still", burst=1, refill_per_second=0.000001)
    for _ in range(2):
        await _job(app, tenant, "still", "queued")
    leases = SqlLeases(app.db, Wakeups(), app.clocks.wall)  # the server's clock
    request = _lease_request(tenant, "still")
    assert len((await leases.lease(request, leases.now())).jobs) == 1
    [before] = await _rows(app, _jobs, _jobs.c.tenant_id == tenant, _jobs.c.status == "throttled")
    await grpc_quotas.update_quota(
        quota_pb2.Quota(
            quota_id=quota.quota_id, job_type="still", burst=1, refill_per_second=0.000001
        )
    )
    assert list((await leases.lease(request, leases.now())).jobs) == []
    [after] = await _rows(app, _jobs, _jobs.c.tenant_id == tenant, _jobs.c.status == "throttled")
    assert after.next_eligible_at == before.next_eligible_at


async def test_resume_wakes_the_workers_waiting_for_the_job_type(
    grpc_quotas: QuotasClient, grpc_target: str, app: Application, tenant: str, access_token: str
) -> None:
    """A worker long-polling a paused job type gets its job as soon as the quota is
    resumed, well within the 1 s poll fallback, every time."""
    quota = await grpc_quotas.create_quota("wakeable", burst=10)
    metadata = (("authorization", f"Bearer {access_token}"), ("x-stella-tenant", tenant))
    request = worker_service_pb2.LeaseJobsRequest(
        worker_id="waiting-worker",
        job_types=["wakeable"],
        max_jobs=1,
        wait_timeout=duration_pb2.Duration(seconds=20),
    )
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        for _ in range(3):
            await grpc_quotas.pause_quota(quota.quota_id, "hold")
            await _job(app, tenant, "wakeable", "queued")
            waiting = asyncio.ensure_future(stub.LeaseJobs(request, metadata=metadata, timeout=30))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # paused: the worker waits
            started = time.monotonic()
            await grpc_quotas.resume_quota(quota.quota_id)
            response = await waiting
            assert time.monotonic() - started < 0.4
            assert [lease.job.job_type for lease in response.leases] == ["wakeable"]
