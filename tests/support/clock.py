"""A clock tests move forward instead of sleeping.

`TestClock` is real time plus an offset that only grows: a server started with
`TestClock().clocks()` behaves like one on real time until a test calls `advance`,
and then as if that many seconds had passed, for its token expiry, DPoP `iat`
windows, revocation reloads and lockouts at once. Tokens and proofs made on real
time stay valid as long as the total advance stays small (well under the 60 s
DPoP window), so a session-wide server can share one clock.
"""

from __future__ import annotations

import time

from server.identity.components import Clocks


class TestClock:
    __test__ = False  # not a test class, despite the name

    def __init__(self) -> None:
        self.offset = 0.0
        self.elapsed_offset = 0.0  # moves the monotonic clock alone (advance_elapsed)

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset + self.elapsed_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.offset += seconds

    def advance_elapsed(self, seconds: float) -> None:
        """Move only the monotonic clock: for what is judged by elapsed time alone (the
        revocation list's staleness), so the wall clock, by which tokens, proofs and
        rows are dated, does not drift from real time across a session (a suite that
        did this once per secured method moved the wall past the 60 s DPoP window)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.elapsed_offset += seconds

    def clocks(self) -> Clocks:
        return Clocks(wall=self.wall, monotonic=self.monotonic)


class ManualClock:
    """A clock that stands still until moved: `clock()` is `clock.now` seconds."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds
