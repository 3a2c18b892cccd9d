"""The quota rules that need no database: the read-time token bucket, the sliding hour's
window, backpressure and the settings' validation (server/domain/quotas.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.domain.quotas import (
    Quota,
    QuotaLimits,
    QuotaPolicy,
    QuotaUsage,
    backpressure,
    bucket_tokens,
    etag_of,
    last_hour_after,
    minute_of,
    validate,
)

T0 = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
POLICY = QuotaPolicy(max_active=100, max_per_hour=1000, burst=50, refill_per_second=10.0)
QUOTA = Quota(
    quota_id="q1",
    tenant_id="t",
    job_type="scan",
    max_active=0,
    max_per_hour=0,
    burst=10,
    refill_per_second=2.0,
    paused=False,
    pause_reason=None,
    active=0,
    tokens=0.5,
    tokens_at=T0,
    version=3,
    created_at=T0,
    updated_at=T0,
    updated_by="c",
)


def test_the_bucket_refills_at_the_rate_up_to_burst() -> None:
    assert bucket_tokens(QUOTA, T0) == 0.5
    assert bucket_tokens(QUOTA, T0 + timedelta(seconds=1.25)) == 3.0
    assert bucket_tokens(QUOTA, T0 + timedelta(seconds=60)) == 10.0
    assert bucket_tokens(QUOTA, T0 - timedelta(seconds=5)) == 0.5  # a clock behind adds nothing
    naive = replace(QUOTA, tokens_at=T0.replace(tzinfo=None))  # as SQLite hands it back
    assert bucket_tokens(naive, T0 + timedelta(seconds=2)) == 4.5


def test_a_bucket_without_refill_is_off_and_full() -> None:
    assert bucket_tokens(replace(QUOTA, refill_per_second=0.0), T0) == 10.0


def test_the_hour_is_the_sixty_minutes_ending_with_the_current_one() -> None:
    now = T0 + timedelta(seconds=59.9)
    assert minute_of(now) == int(T0.timestamp()) // 60
    assert last_hour_after(now) == minute_of(now) - 60


def test_etag_follows_the_version() -> None:
    assert etag_of(QUOTA) == "v3"


@pytest.mark.parametrize(
    ("changes", "usage", "throttled", "expected"),
    [
        ({}, QuotaUsage(0, 1.0, 0), 0, False),
        ({"paused": True}, QuotaUsage(0, 10.0, 0), 0, True),
        ({"max_active": 2}, QuotaUsage(2, 10.0, 0), 0, True),
        ({"max_active": 2}, QuotaUsage(1, 10.0, 0), 0, False),
        ({}, QuotaUsage(0, 0.99, 0), 0, True),
        ({"refill_per_second": 0.0}, QuotaUsage(0, 0.0, 0), 0, False),
        ({"max_per_hour": 5}, QuotaUsage(0, 10.0, 5), 0, True),
        ({}, QuotaUsage(0, 10.0, 0), 1, True),
    ],
)
def test_backpressure(
    changes: dict[str, object], usage: QuotaUsage, throttled: int, expected: bool
) -> None:
    assert backpressure(replace(QUOTA, **changes), usage, throttled) is expected  # type: ignore[arg-type]


def test_validation_names_each_field_once() -> None:
    assert validate(QuotaLimits(0, 0, 1, 0.0), POLICY) == []
    assert validate(QuotaLimits(100, 1000, 50, 10.0), POLICY) == []
    found = validate(QuotaLimits(-1, 1001, 0, float("inf")), POLICY)
    assert [(v.field, v.description) for v in found] == [
        ("maxActive", "must not be negative, got -1"),
        ("maxPerHour", "must be at most 1000 (the policy maximum), got 1001"),
        ("burst", "must be at least 1, got 0"),
        ("refillPerSecond", "must be a finite number of tokens per second, got inf"),
    ]
