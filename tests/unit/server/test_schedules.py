"""Schedule planning (issue 10 point 5, server/domain/schedules.py): which ticks a due
schedule enqueues now, by misfire policy, across daylight-saving changes, and the
event-time key; pure functions, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.domain.errors import InvalidArgument
from server.domain.jobs import EnqueueRequest, JobLimits, validate_enqueue
from server.domain.schedules import (
    NOT_PLACES,
    RUN_ONCE,
    SKIP,
    Schedule,
    ScheduleRequest,
    event_key,
    last_tick,
    next_tick,
    plan,
    tick_request,
    ticks,
    validate_schedule,
    zone,
)

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def schedule(cron: str = "*/15 * * * *", policy: str = SKIP, **changes: object) -> Schedule:
    base = Schedule(
        source_id="src-1",
        tenant_id="t",
        project_id=None,
        cron=cron,
        time_zone="UTC",
        misfire_policy=policy,
        job_type="ingest",
        priority=5,
        payload='{"feed":"prices"}',
        max_attempts=3,
        backoff_initial_s=1.0,
        backoff_max_s=300.0,
        backoff_multiplier=2.0,
        backoff_jitter=0.2,
        next_run_at=T0,
        last_run_at=None,
        created_at=T0,
        updated_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_tick_due_within_the_grace_runs_and_the_next_one_is_planned() -> None:
    found = plan(schedule(), T0 + timedelta(seconds=5), GRACE)
    assert found.ticks == (T0,)
    assert found.next_run_at == T0 + timedelta(minutes=15)
    assert found.missed is False


def test_not_yet_due_plans_nothing() -> None:
    found = plan(schedule(next_run_at=T0 + timedelta(minutes=15)), T0, GRACE)
    assert found.ticks == ()
    assert found.next_run_at == T0 + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Down from 10:00 to 13:00:30: the 13:00 tick is within the grace and runs;
        # 10:00 .. 12:45 were missed.
        (SKIP, (T0 + timedelta(hours=3),)),
        (RUN_ONCE, (T0 + timedelta(hours=2, minutes=45), T0 + timedelta(hours=3))),
    ],
    ids=["skip", "run_once"],
)
def test_missed_ticks_follow_the_misfire_policy(policy: str, expected: tuple[datetime]) -> None:
    now = T0 + timedelta(hours=3, seconds=30)
    found = plan(schedule(policy=policy), now, GRACE)
    assert found.ticks == expected
    assert found.missed is True
    assert found.next_run_at == T0 + timedelta(hours=3, minutes=15)


def test_a_year_of_downtime_is_planned_without_walking_it() -> None:
    now = T0 + timedelta(days=365, minutes=7)
    found = plan(schedule(policy=RUN_ONCE), now, GRACE)
    assert found.ticks == (T0 + timedelta(days=365, minutes=0),)
    assert found.next_run_at == T0 + timedelta(days=365, minutes=15)


def test_ticks_in_a_window_are_half_open_and_bounded() -> None:
    found = ticks("0 * * * *", "UTC", T0, T0 + timedelta(hours=3), limit=10)
    assert found == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    capped = ticks("* * * * *", "UTC", T0, T0 + timedelta(days=1), limit=10)
    assert len(capped) == 11  # one more than the limit says "more"
    assert next_tick("0 * * * *", "UTC", T0) == T0 + timedelta(hours=1)
    assert last_tick("0 * * * *", "UTC", T0) == T0
    assert last_tick("0 * * * *", "UTC", T0 - timedelta(microseconds=1)) == T0 - timedelta(hours=1)


def test_time_zones_and_daylight_saving_follow_debian_cron() -> None:
    # 02:30 Europe/Paris does not exist on 2026-03-29 (clocks go 02:00 -> 03:00):
    # Debian cron runs the job at the gap's end, 03:00 CEST = 01:00 UTC.
    start = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    found = ticks("30 2 * * *", "Europe/Paris", start, start + timedelta(days=3), limit=10)
    assert found == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]
    assert next_tick("@daily", "America/New_York", T0) == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


def test_the_tick_request_is_the_template_with_the_event_time_key() -> None:
    tick = T0 + timedelta(minutes=15)
    request = tick_request(schedule(), tick)
    assert request.idempotency_key == "event:src-1:ingest:2026-11-30T10:15:00Z"
    assert event_key("src-1", "ingest", tick) == request.idempotency_key
    assert (request.event_time, request.payload, request.priority) == (
        tick,
        {"feed": "prices"},
        5,
    )
    spec = validate_enqueue(request, JobLimits())
    again = validate_enqueue(tick_request(schedule(), tick), JobLimits())
    other = validate_enqueue(tick_request(schedule(), T0), JobLimits())
    assert spec.request_hash == again.request_hash != other.request_hash


def _request(**changes: object) -> ScheduleRequest:
    base = ScheduleRequest(
        cron="*/5 * * * *",
        time_zone="Europe/Paris",
        misfire_policy="run_once",
        template=EnqueueRequest(job_type="ingest", source_id=""),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_valid_schedule_is_first_due_at_the_next_tick() -> None:
    found, _ = validate_schedule(_request(), JobLimits(), source_id="s", now=T0)
    assert (found.next_run_at, found.misfire_policy, found.max_attempts) == (
        T0 + timedelta(minutes=5),
        RUN_ONCE,
        3,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron: is not a cron expression (Bad minute)"),
        ({"cron": "every day"}, "schedule.cron: is not a cron expression (Wrong number of fields)"),
        ({"cron": ""}, "schedule.cron: is required"),
        ({"cron": "0 0 31 2 *"}, "schedule.cron: is not a cron expression (Bad day-of-month)"),
        ({"time_zone": "Mars/Olympus"}, "schedule.timeZone: must be an IANA time zone name"),
        ({"time_zone": "localtime"}, "schedule.timeZone: must be an IANA time zone name"),
        ({"time_zone": "Factory"}, "schedule.timeZone: must be an IANA time zone name"),
        ({"time_zone": "posixrules"}, "schedule.timeZone: must be an IANA time zone name"),
        ({"misfire_policy": "later"}, "schedule.misfirePolicy: must be one of skip, run_once"),
        ({"template": None}, "schedule.jobTemplate: is required"),
        (
            {"template": EnqueueRequest(job_type="Bad Type", source_id="")},
            "schedule.jobTemplate.jobType: must be a lowercase slug",
        ),
    ],
    ids=[
        "minute",
        "syntax",
        "blank",
        "never",
        "zone",
        "host-localtime",
        "factory-zone",
        "posixrules",
        "policy",
        "template",
        "job-type",
    ],
)
def test_bad_schedules_name_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_schedule(_request(**changes), JobLimits(), source_id="s", now=T0)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("name", ["localtime", "Factory"])
def test_a_stored_zone_no_longer_accepted_still_reads(name: str) -> None:
    """A schedule stored before `localtime`, `Factory` and `posixrules` were refused
    keeps firing: reading its zone raised KeyError in every scheduler pass, and no
    schedule of any tenant fired."""
    assert name in NOT_PLACES
    assert zone(name) is not None
    assert next_tick("*/5 * * * *", name, T0) is not None
