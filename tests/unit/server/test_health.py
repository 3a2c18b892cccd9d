"""Readiness rules, concurrent dependency checks and the domain-gauge cache
(server/domain/health.py, server/observability/domain_gauges.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from server.domain.health import (
    DOWN,
    TIMEOUT,
    UP,
    Check,
    Dependency,
    DependencyDown,
    LoopState,
    Readiness,
    check_dependencies,
    not_ready,
    overall_status,
    schema_check,
    task_state,
)
from server.observability.domain_gauges import DomainGauge, DomainGauges


async def test_task_state_says_how_a_loop_ended() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    async def crash() -> None:
        raise RuntimeError("boom")

    running = asyncio.create_task(forever())
    crashed = asyncio.create_task(crash())
    await asyncio.sleep(0)
    assert task_state(None) == LoopState(False, "not started")
    assert task_state(running) == LoopState(True, "running")
    assert task_state(crashed) == LoopState(False, "stopped: RuntimeError: boom")
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert task_state(running) == LoopState(False, "stopped: cancelled")


def test_a_probe_that_raises_is_a_loop_not_running() -> None:
    readiness = Readiness()

    def broken() -> LoopState:
        raise KeyError("x")

    readiness.register("ok-loop", lambda: LoopState(True, "running"))
    readiness.register("broken-loop", broken)
    assert readiness.loops() == [
        Check("loop:ok-loop", True, "running"),
        Check("loop:broken-loop", False, "probe failed: KeyError: 'x'"),
    ]


def test_schema_check_compares_revision_sets() -> None:
    assert schema_check(["0011"], ["0011"]) == Check("migrations", True, "at 0011")
    assert schema_check(["0009"], ["0011"]) == Check("migrations", False, "at 0009, expected 0011")
    assert schema_check([], ["0011"]) == Check(
        "migrations", False, "no migration applied; expected 0011"
    )


def test_not_ready_names_every_failed_check() -> None:
    checks = [
        Check("database", True, "reachable"),
        Check("migrations", False, "at 0009, expected 0011"),
        Check("loop:lease-reaper", False, "stopped: cancelled"),
    ]
    refusal = not_ready(checks)
    assert refusal is not None
    assert refusal.message == (
        "not ready: migrations: at 0009, expected 0011; loop:lease-reaper: stopped: cancelled"
    )
    assert refusal.reason == "NOT_READY"
    assert refusal.metadata == {
        "migrations": "at 0009, expected 0011",
        "loop:lease-reaper": "stopped: cancelled",
    }
    assert not_ready(checks[:1]) is None


async def test_dependencies_are_checked_at_once_each_within_the_timeout() -> None:
    async def up() -> None:
        await asyncio.sleep(0.05)

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def answers_503() -> None:
        raise DependencyDown("HTTP 503")

    async def refuses() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    dependencies = [
        Dependency("a", "service", "http://a/health", up),
        Dependency("b", "service", "http://b/health", hangs),
        Dependency("c", "service", "http://c/health", hangs),
        Dependency("d", "peer", "http://d/health", answers_503),
        Dependency("e", "redis", "e:6379", refuses),
    ]
    started = time.perf_counter()
    results = await check_dependencies(dependencies, timeout_s=0.3)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # two hanging dependencies cost one timeout, not two
    assert [(r.name, r.status, r.detail) for r in results] == [
        ("a", UP, ""),
        ("b", TIMEOUT, "no answer within 0.3s"),
        ("c", TIMEOUT, "no answer within 0.3s"),
        ("d", DOWN, "HTTP 503"),
        ("e", DOWN, "ConnectionRefusedError: [Errno 111] Connection refused"),
    ]
    assert 0.05 <= results[0].latency_s < 0.3
    assert results[1].latency_s >= 0.3
    assert overall_status(results) == "degraded"
    assert overall_status(results[:1]) == "ok"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_gauges_are_read_once_per_ttl_and_shared_by_concurrent_scrapes() -> None:
    reads: list[int] = []

    async def depth() -> Sequence[tuple[Sequence[str], float]]:
        reads.append(1)
        await asyncio.sleep(0.01)
        return [(("acme", "thumbnail"), 3.0)]

    clock = _Clock()
    gauges = DomainGauges(ttl_s=5.0, clock=clock)
    gauges.register(DomainGauge("orchestrator_test_depth", "Test.", ("tenant", "job_type"), depth))
    texts = await asyncio.gather(*(gauges.exposition() for _ in range(4)))
    assert len(reads) == 1
    assert texts[0] == texts[3]
    assert b'orchestrator_test_depth{job_type="thumbnail",tenant="acme"} 3.0' in texts[0]
    assert b'orchestrator_domain_gauge_up{gauge="orchestrator_test_depth"} 1.0' in texts[0]
    clock.now += 4.9
    await gauges.exposition()
    assert len(reads) == 1
    clock.now += 0.2
    await gauges.exposition()
    assert len(reads) == 2


async def test_a_failing_or_slow_gauge_is_left_out_and_flagged() -> None:
    async def fails() -> Sequence[tuple[Sequence[str], float]]:
        raise OSError("database gone")

    async def slow() -> Sequence[tuple[Sequence[str], float]]:
        await asyncio.sleep(3600)
        return []

    async def fine() -> Sequence[tuple[Sequence[str], float]]:
        return [((), 7.0)]

    gauges = DomainGauges(timeout_s=0.1)
    gauges.register(DomainGauge("orchestrator_fails", "F.", (), fails))
    gauges.register(DomainGauge("orchestrator_slow", "S.", (), slow))
    gauges.register(DomainGauge("orchestrator_fine", "OK.", (), fine))
    text = (await gauges.exposition()).decode()
    assert "orchestrator_fails " not in text and "orchestrator_slow " not in text
    assert "orchestrator_fine 7.0" in text
    assert 'orchestrator_domain_gauge_up{gauge="orchestrator_fails"} 0.0' in text
    assert 'orchestrator_domain_gauge_up{gauge="orchestrator_slow"} 0.0' in text
    assert 'orchestrator_domain_gauge_up{gauge="orchestrator_fine"} 1.0' in text


def test_gauge_names_are_checked() -> None:
    gauges = DomainGauges()

    async def nothing() -> Sequence[tuple[Sequence[str], float]]:
        return []

    with pytest.raises(ValueError, match="orchestrator_<snake_case>"):
        gauges.register(DomainGauge("queue_depth", "No prefix.", (), nothing))
    gauges.register(DomainGauge("orchestrator_x", "X.", (), nothing))
    with pytest.raises(ValueError, match="already registered"):
        gauges.register(DomainGauge("orchestrator_x", "X.", (), nothing))
