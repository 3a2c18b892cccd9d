"""QUOTA and JOB: names, error reasons and audited views, over the storage rows."""

from __future__ import annotations

from datetime import UTC, datetime

from server.domain.resources import JOB, QUOTA
from server.storage.tables import JobRow, QuotaRow

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_quota_is_named_and_audited_by_its_settings() -> None:
    row = QuotaRow(
        quota_id="q-1",
        tenant_id="t-1",
        job_type="scan",
        max_active=4,
        max_per_hour=600,
        burst=10,
        refill_per_second=2.5,
        paused=True,
        pause_reason="maintenance",
        active=3,
        tokens=1.5,
    )
    assert (QUOTA.name(QUOTA.id_of(row)), QUOTA.reason_prefix, QUOTA.id_field) == (
        "quotas/q-1",
        "QUOTA",
        "quotaId",
    )
    assert QUOTA.snapshot(row) == {
        "quotaId": "q-1",
        "jobType": "scan",
        "maxActive": 4,
        "maxPerHour": 600,
        "burst": 10,
        "refillPerSecond": 2.5,
        "paused": True,
        "pauseReason": "maintenance",
    }


def test_job_is_named_and_audited_without_its_payload() -> None:
    row = JobRow(
        job_id="j-1",
        tenant_id="t-1",
        job_type="scan",
        source_id="s-1",
        status="queued",
        priority=5,
        payload='{"secret": 1}',
        max_attempts=3,
        backoff_initial_s=1.0,
        backoff_max_s=300.0,
        backoff_multiplier=2.0,
        backoff_jitter=0.2,
        run_at=T0,
        idempotency_key="k-1",
    )
    assert (JOB.name(JOB.id_of(row)), JOB.reason_prefix, JOB.id_field) == (
        "jobs/j-1",
        "JOB",
        "jobId",
    )
    assert JOB.snapshot(row) == {
        "jobId": "j-1",
        "jobType": "scan",
        "sourceId": "s-1",
        "status": "queued",
        "priority": 5,
        "attempts": 0,
        "maxAttempts": 3,
        "idempotencyKey": "k-1",
        "replayOf": None,
        "packRunId": None,
        "projectId": None,
    }
