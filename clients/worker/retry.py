"""Which failed calls a worker retries, and how long it waits between tries.

Transient failures are retried with capped exponential backoff plus random jitter
(0.05 s doubling up to 5 s, plus up to 0.25 s so that workers cut off together do not
come back together: tenacity's `wait_exponential_jitter`, the Google Cloud retry
strategy). Transient are the gRPC codes that the gRPC status-code guide
and AIP-194 call retryable — UNAVAILABLE (the server is down or restarting, the
usual case), RESOURCE_EXHAUSTED and ABORTED — plus DEADLINE_EXCEEDED, CANCELLED,
INTERNAL and UNKNOWN, safe here because every WorkerService write is fenced (a
repeated completion of a job already completed is refused for its item,
FAILED_PRECONDITION, and changes nothing), and a token endpoint that cannot be reached
or answers 5xx. A worker never cancels a call itself with that status (its own
cancellations are asyncio's), so a CANCELLED call was cut by the other side: a gRPC
server shutting down cancels the calls that raced its shutdown (seen in
tests/integration/test_faults.py). INTERNAL is what the server answers for a deadlock,
a full connection pool or a busy SQLite file: a worker that stopped on it stopped the
whole fleet at once, where River's and Temporal's pollers carry on with backoff.
Anything else (a refused credential, a missing scope, a malformed request, a token URL
with no http(s) scheme) is a mistake retrying cannot fix.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)
from tenacity.stop import StopBaseT

from clients.errors import ApiError

TRANSIENT_CODES = frozenset(
    {
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "CANCELLED",
        "INTERNAL",
        "UNKNOWN",
    }
)
INITIAL_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 5.0
JITTER_SECONDS = 0.25

logger = logging.getLogger("clients.worker")


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the failed call may succeed (see the module docstring)."""
    if isinstance(exc, ApiError):
        return exc.code in TRANSIENT_CODES or (exc.http_status or 0) >= 500
    # UnsupportedProtocol is a TransportError too: a token URL without http(s)://.
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


def retrying(
    what: str,
    *,
    stop: StopBaseT,
    sleep: Callable[[float], Awaitable[None]],
    initial: float = INITIAL_DELAY_SECONDS,
    maximum: float = MAX_DELAY_SECONDS,
    jitter: float = JITTER_SECONDS,
) -> AsyncRetrying:
    """Retries of `what` (named in the log) while `is_transient`, until `stop`; after
    the last try the call's own exception is raised (not tenacity's RetryError)."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        described = (
            str(error) if isinstance(error, ApiError) else f"{type(error).__name__}: {error}"
        )
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s failed (%s); try %d again in %.2f s",
            what,
            described,
            state.attempt_number + 1,
            delay,
        )

    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter),
        stop=stop,
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
