"""The failed-secret throttle's policy, over the SQL counts every replica shares (here
SQLite; PostgreSQL and Redis: tests/integration/test_replica_state.py)."""

from __future__ import annotations

import pytest

from server.identity.authorization_server.throttle import FailureThrottle, SqlFailureCounts
from server.storage.repositories.guards import SqlGuards
from tests.support.clock import ManualClock


@pytest.fixture
def counts(guards: SqlGuards) -> SqlFailureCounts:
    return SqlFailureCounts(guards)


async def test_lockout_starts_after_free_failures_and_doubles_up_to_the_bound(
    counts: SqlFailureCounts,
) -> None:
    clock = ManualClock(1000.0)
    throttle = FailureThrottle(
        counts, free_failures=3, base_delay=1.0, max_delay=4.0, window=10.0, clock=clock
    )
    for _ in range(2):
        await throttle.failed("c")
        assert await throttle.retry_after("c") is None
    waits = []
    for _ in range(4):
        await throttle.failed("c")
        waits.append(await throttle.retry_after("c"))
    assert waits == [1.0, 2.0, 4.0, 4.0]
    clock.advance(3.5)
    assert await throttle.retry_after("c") == 0.5  # counted from the last failure
    clock.advance(0.5)
    assert await throttle.retry_after("c") is None


async def test_success_resets_and_ids_are_independent(counts: SqlFailureCounts) -> None:
    clock = ManualClock(1000.0)
    throttle = FailureThrottle(counts, free_failures=1, clock=clock)
    await throttle.failed("a")
    assert await throttle.retry_after("a") == 1.0
    assert await throttle.retry_after("b") is None
    await throttle.succeeded("a")
    assert await throttle.retry_after("a") is None
    await throttle.failed("a")  # counted from zero again
    assert await throttle.retry_after("a") == 1.0


async def test_failures_lapse_after_a_quiet_window(counts: SqlFailureCounts) -> None:
    clock = ManualClock(1000.0)
    throttle = FailureThrottle(
        counts, free_failures=2, base_delay=1.0, max_delay=4.0, window=10.0, clock=clock
    )
    for _ in range(3):
        await throttle.failed("c")
    assert await throttle.retry_after("c") == 2.0
    clock.advance(9.999)
    assert await counts.failures("c", now=clock()) == (3, 1000.0)
    clock.advance(0.001)  # the window after the last failure has run out
    assert await counts.failures("c", now=clock()) is None
    await throttle.failed("c")
    assert await counts.failures("c", now=clock()) == (1, 1010.0)
    assert await throttle.retry_after("c") is None


async def test_a_long_streak_stays_at_the_bound(counts: SqlFailureCounts) -> None:
    clock = ManualClock(1000.0)
    throttle = FailureThrottle(counts, free_failures=0, max_delay=300.0, clock=clock)
    for _ in range(1100):  # 2.0 ** 1100 would overflow a float
        await counts.add_failure("c", now=clock(), window=900.0)
    assert await throttle.retry_after("c") == 300.0


def test_the_window_must_outlast_the_longest_lockout(counts: SqlFailureCounts) -> None:
    with pytest.raises(ValueError, match="window must outlast"):
        FailureThrottle(counts, max_delay=300.0, window=299.0)
