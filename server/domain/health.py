"""Readiness and dependency health: the rules, without any transport or SQL.

- Readiness (Kubernetes readiness probe semantics, grpc.health.v1 SERVING): the
  database answers, its schema is at head, and every registered background loop
  runs. `Readiness` is the registry loops join: a loop registers a probe once, at
  start, and every readiness answer asks it.
- Dependency health (`/health/system`): each dependency is probed concurrently and
  each probe is cut off at the timeout, so the answer takes about one timeout
  however many dependencies hang (`check_dependencies`).

Registering a loop (server/app.py does it for the lease reaper, pruning and the
wake-up listener)::

    readiness.register_task("scheduler", lambda: scheduler.task)   # an asyncio.Task
    readiness.register("outbox-publisher", publisher.loop_state)   # any probe

A probe is a cheap synchronous function: it reads state, it never waits.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from server.domain.errors import Unavailable

LOOP_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
NOT_READY_REASON: Final = "NOT_READY"

# Dependency statuses (ops_service.proto DependencyHealth.status).
UP: Final = "up"
DOWN: Final = "down"
TIMEOUT: Final = "timeout"


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness condition: `name` ("database", "migrations", "loop:<name>"), whether
    it holds and what was found."""

    name: str
    ready: bool
    detail: str


@dataclass(frozen=True, slots=True)
class LoopState:
    """What a background loop's probe reports."""

    running: bool
    detail: str


LoopProbe = Callable[[], LoopState]


def task_state(task: asyncio.Task[object] | asyncio.Task[None] | None) -> LoopState:
    """The state of a loop run as one asyncio task: running while the task is not done;
    a task that ended says how (cancelled, returned, or the exception that ended it)."""
    if task is None:
        return LoopState(False, "not started")
    if not task.done():
        return LoopState(True, "running")
    if task.cancelled():
        return LoopState(False, "stopped: cancelled")
    error = task.exception()
    if error is None:
        return LoopState(False, "stopped: returned")
    return LoopState(False, f"stopped: {type(error).__name__}: {error}")


class Readiness:
    """The background loops readiness waits for, by name, in registration order."""

    def __init__(self) -> None:
        self._probes: dict[str, LoopProbe] = {}

    def register(self, name: str, probe: LoopProbe) -> None:
        """Add a loop. `name` is a lower-case slug ("lease-reaper"); raises ValueError
        for another shape or a name already registered (a wiring bug, at start)."""
        if not LOOP_NAME.fullmatch(name):
            raise ValueError(f"loop name {name!r} must be a lower-case slug like 'lease-reaper'")
        if name in self._probes:
            raise ValueError(f"loop {name!r} is already registered")
        self._probes[name] = probe

    def register_task(
        self, name: str, task_of: Callable[[], asyncio.Task[None] | asyncio.Task[object] | None]
    ) -> None:
        """Add a loop that is one asyncio task; `task_of()` returns it (None before start)."""
        self.register(name, lambda: task_state(task_of()))

    def unregister(self, name: str) -> None:
        """Forget a loop (one stopped on purpose, e.g. a feature switched off at runtime)."""
        self._probes.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._probes)

    def loops(self) -> list[Check]:
        """One check per registered loop; a probe that raises is a loop not running."""
        checks = []
        for name, probe in self._probes.items():
            try:
                state = probe()
            except Exception as exc:  # a broken probe must not break readiness itself
                state = LoopState(False, f"probe failed: {type(exc).__name__}: {exc}")
            checks.append(Check(f"loop:{name}", state.running, state.detail))
        return checks


def schema_check(current: Sequence[str], heads: Sequence[str]) -> Check:
    """Whether the database's Alembic revisions are this build's heads (same set)."""
    if not current:
        return Check("migrations", False, f"no migration applied; expected {_revisions(heads)}")
    if set(current) != set(heads):
        return Check(
            "migrations",
            False,
            f"at {_revisions(current)}, expected {_revisions(heads)}",
        )
    return Check("migrations", True, f"at {_revisions(current)}")


def _revisions(revisions: Sequence[str]) -> str:
    return ", ".join(sorted(revisions)) or "none"


def not_ready(checks: Sequence[Check]) -> Unavailable | None:
    """The UNAVAILABLE answer of a server that is not ready (ErrorInfo reason NOT_READY,
    metadata check name -> detail), or None when every check holds."""
    failed = [check for check in checks if not check.ready]
    if not failed:
        return None
    named = "; ".join(f"{check.name}: {check.detail}" for check in failed)
    return Unavailable(
        f"not ready: {named}",
        reason=NOT_READY_REASON,
        metadata={check.name: check.detail for check in failed},
    )


# --- dependency health ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dependency:
    """One dependency to check: `probe()` returns normally when it is up and raises
    `DependencyDown` (or any exception) when it is not."""

    name: str
    kind: str  # "database", "redis", "peer", "service"
    target: str  # what is checked, credentials already redacted
    probe: Callable[[], Awaitable[None]]


class DependencyDown(Exception):
    """A dependency answered, but not healthily (e.g. "HTTP 503")."""


@dataclass(frozen=True, slots=True)
class DependencyResult:
    name: str
    kind: str
    target: str
    status: str  # UP, DOWN or TIMEOUT
    latency_s: float  # seconds the check took (the timeout, for TIMEOUT)
    detail: str  # why it is not up; "" when up


async def check_dependencies(
    dependencies: Sequence[Dependency], *, timeout_s: float
) -> list[DependencyResult]:
    """Probe every dependency at once, each within `timeout_s` seconds; results in the
    order given. Never raises for a failing probe: it is a DOWN or TIMEOUT result."""
    return list(await asyncio.gather(*(_check(d, timeout_s) for d in dependencies)))


async def _check(dependency: Dependency, timeout_s: float) -> DependencyResult:
    started = time.perf_counter()
    status, detail = UP, ""
    try:
        async with asyncio.timeout(timeout_s):
            await dependency.probe()
    except TimeoutError:
        status, detail = TIMEOUT, f"no answer within {timeout_s:g}s"
    except Exception as exc:
        status, detail = DOWN, _describe(exc)
    elapsed = time.perf_counter() - started
    if status == TIMEOUT:
        elapsed = max(elapsed, timeout_s)
    return DependencyResult(
        dependency.name, dependency.kind, dependency.target, status, elapsed, detail
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DependencyDown):
        return str(exc)
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"[:300]


def overall_status(results: Sequence[DependencyResult]) -> str:
    """ "ok" when every dependency is up, else "degraded"."""
    return "ok" if all(result.status == UP for result in results) else "degraded"
