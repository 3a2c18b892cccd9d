from __future__ import annotations

from server.identity.authorization_server.throttle import FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_starts_after_free_failures_and_doubles_up_to_the_bound() -> None:
    clock = Clock()
    throttle = FailureThrottle(free_failures=3, base_delay=1.0, max_delay=4.0, clock=clock)
    for _ in range(2):
        throttle.failed("c")
        assert throttle.retry_after("c") is None
    waits = []
    for _ in range(4):
        throttle.failed("c")
        waits.append(throttle.retry_after("c"))
    assert waits == [1.0, 2.0, 4.0, 4.0]
    clock.now += 4.0
    assert throttle.retry_after("c") is None


def test_success_resets_and_ids_are_independent() -> None:
    clock = Clock()
    throttle = FailureThrottle(free_failures=1, clock=clock)
    throttle.failed("a")
    assert throttle.retry_after("a") == 1.0
    assert throttle.retry_after("b") is None
    throttle.succeeded("a")
    assert throttle.retry_after("a") is None


def test_table_is_bounded_idle_entries_first() -> None:
    clock = Clock()
    throttle = FailureThrottle(free_failures=1, max_delay=10.0, max_entries=2, clock=clock)
    throttle.failed("old")
    clock.now += 100.0
    throttle.failed("a")
    throttle.failed("b")
    assert throttle.retry_after("a") is not None and throttle.retry_after("b") is not None
    assert len(throttle._entries) == 2 and "old" not in throttle._entries
    throttle.failed("c")  # nothing idle: the oldest goes
    assert list(throttle._entries) == ["b", "c"]
