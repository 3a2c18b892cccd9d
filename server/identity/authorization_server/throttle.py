"""Slow down secret guessing: a bounded, exponential lockout per client id.

After `free_failures` consecutive failed authentications of one client id, that id
is locked for `base_delay` seconds, doubling with every further failure up to
`max_delay`. While locked, attempts are refused without checking the secret, so a
guesser gains nothing by hammering. A success resets the id.

The state is in memory, per process: with N replicas a guesser gets N times the
attempts, which stays far from useful against 256-bit secrets. Unknown ids are
throttled exactly like known ones, so the throttle reveals nothing about which
ids exist. The table is bounded; when full, idle entries go first, then the oldest.
The flip side of any per-id lockout: someone who knows a client id can lock it
out, for at most `max_delay` seconds at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Entry:
    failures: int
    locked_until: float
    last_failure: float


class FailureThrottle:
    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_failures
        self._base = base_delay
        self._max = max_delay
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # authentication runs in worker threads

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            left = entry.locked_until - self._clock()
            return left if left > 0 else None

    def failed(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            entry = self._entries.pop(key, None) or _Entry(0, 0.0, now)
            entry.failures += 1
            entry.last_failure = now
            over = entry.failures - self._free
            if over >= 0:
                entry.locked_until = now + min(self._base * 2.0**over, self._max)
            self._entries[key] = entry  # re-inserted: the dict stays ordered by recency
            if len(self._entries) > self._max_entries:
                self._evict(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _evict(self, now: float) -> None:
        idle = [
            key
            for key, entry in self._entries.items()
            if entry.locked_until <= now and now - entry.last_failure > self._max
        ]
        for key in idle:
            del self._entries[key]
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]
