"""One upstream service: its httpx client, retries, circuit breaker and size cap.

`UpstreamClient.post_json(path, body)` POSTs JSON to `{base URL}{path}` and answers
the decoded JSON answer, or raises a domain error (all messages name the upstream):

- not configured (no base URL): `Unavailable` UPSTREAM_NOT_CONFIGURED naming the
  setting, e.g. "DOC_STORE_URL is not set";
- breaker open: `Unavailable` CIRCUIT_OPEN with `retry_after_s`, the seconds until
  the breaker lets a trial call through (purgatory's half-open state);
- an HTTP status >= 400: `UpstreamFailed` UPSTREAM_STATUS, metadata `upstreamStatus`;
- connection refused/reset: `UpstreamFailed` UPSTREAM_UNREACHABLE;
- not JSON: `UpstreamFailed` UPSTREAM_GARBAGE;
- a body over `max_bytes` (Content-Length, or counted while streaming, reading
  stops there): `UpstreamFailed` UPSTREAM_TOO_LARGE naming the cap;
- no answer within the connect + read timeouts: `DeadlineExceeded` UPSTREAM_TIMEOUT.

Retries (tenacity): only when the call is declared idempotent, on timeouts,
unreachable upstreams and 502/503/504 (a gateway's or an overloaded server's passing
trouble, RFC 9110 §15.6), at most `retries` more attempts, waiting exponential backoff
with jitter (0.1 s doubling, at most 2 s, plus up to 0.1 s), and never beyond the
caller's deadline. A 500 is not retried, not even on a read: it is the upstream's own
failure to handle this request, which the same request meets again; retrying it would
triple the load on a failing service and the caller's wait for the same answer.

The breaker (purgatory, in memory, one per upstream and process) counts calls, not
attempts: one outcome per call, taken after its retries. Consecutive calls that ended
in a timeout, an unreachable upstream, a 5xx, garbage or an oversized answer open it;
a call that succeeded (on any attempt) or ended in a 4xx (the request's fault: the
upstream answered) resets the count and closes a half-open breaker. So a call answers
its own failure (502, 504), never the CIRCUIT_OPEN its earlier attempts would have
tripped; only later calls see the open breaker. Half-open lets calls through until one
fails (purgatory has no single-trial limit).

Each attempt is bounded by asyncio.timeout(connect + read), so an upstream trickling
bytes cannot hold a request; awaiting it holds no lock and no database connection,
so a hanging upstream delays only its own callers.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OPENED, OpenedState
from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from server.domain.errors import DeadlineExceeded, Unavailable, UpstreamFailed

RETRY_STATUSES = frozenset({502, 503, 504})
# JSON nesting an answer may have: as a google.protobuf.Value each JSON level is three
# message levels (Value, Struct, entry) and protobuf decodes at most 100.
MAX_DEPTH = 32
DOUBLE_MAX = 1.7976931348623157e308
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 2.0
BACKOFF_JITTER_S = 0.1
_TRACE_ID = "x-stella-trace-id"
_TENANT = "x-stella-tenant"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One upstream: `name` for messages and the breaker, `setting` the variable of its
    base URL (None: not configured). Seconds, bytes."""

    name: str
    setting: str
    url: str | None
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    retries: int = 2
    max_bytes: int = 4 * 1024 * 1024
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0


class _AttemptFailed(Exception):
    """One failed attempt; `counts` says whether the breaker counts it, `retry` whether
    an idempotent call tries again."""

    def __init__(self, error: Exception, *, counts: bool, retry: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.counts = counts
        self.retry = retry


class UpstreamClient:
    """See the module docstring. One per upstream and process; `close()` at shutdown."""

    def __init__(
        self,
        config: UpstreamConfig,
        breakers: AsyncCircuitBreakerFactory,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._breakers = breakers
        self._http: httpx.AsyncClient | None = None
        if config.url:
            self._http = httpx.AsyncClient(
                base_url=config.url.rstrip("/"),
                timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
                headers={"Accept": "application/json"},
                follow_redirects=False,
                transport=transport,
            )

    @property
    def configured(self) -> bool:
        return self._http is not None

    @property
    def attempt_timeout_s(self) -> float:
        return self.config.connect_timeout_s + self.config.read_timeout_s

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def not_configured(self) -> Unavailable:
        return Unavailable(
            f"{self.config.setting} is not set: the {self.config.name} service is not configured",
            reason="UPSTREAM_NOT_CONFIGURED",
            metadata={"setting": self.config.setting, "upstream": self.config.name},
        )

    async def post_json(
        self,
        path: str,
        body: Any,
        *,
        idempotent: bool = False,
        headers: Mapping[str, str] | None = None,
        deadline_s: float | None = None,
        expect_json: bool = True,
    ) -> Any:
        """POST `body` as JSON to `{base}{path}`; the decoded answer (any JSON value), or
        None when not `expect_json` (any body, even empty, is then an answer).
        `deadline_s`: the caller's remaining time (seconds), which retries never pass."""
        if self._http is None:
            raise self.not_configured()
        content = json.dumps(body, separators=(",", ":")).encode()  # non-ASCII as JSON escapes
        sent = {"Content-Type": "application/json", **(headers or {})}
        attempts = 1 + (self.config.retries if idempotent else 0)
        stop: stop_base = stop_after_attempt(attempts)
        if deadline_s is not None:
            stop = stop | stop_after_delay(max(0.0, deadline_s - self.attempt_timeout_s))
        retrying = AsyncRetrying(
            stop=stop,
            wait=wait_exponential_jitter(
                multiplier=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S, jitter=BACKOFF_JITTER_S
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, _AttemptFailed) and exc.retry),
            reraise=True,
        )
        breaker = await self._breaker()
        try:
            async with breaker:  # one outcome per call: the last attempt's
                async for attempt in retrying:
                    with attempt:
                        return await self._exchange(path, content, sent, expect_json)
        except OpenedState as opened:
            raise self._circuit_open(opened) from None
        except _AttemptFailed as failed:
            raise failed.error from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def _breaker(self) -> AsyncCircuitBreaker:
        return await self._breakers.get_breaker(
            self.config.name,
            threshold=self.config.breaker_failures,
            ttl=self.config.breaker_reset_s,
            exclude=[(_AttemptFailed, lambda exc: not exc.counts)],
        )

    async def open_for(self) -> float | None:
        """Seconds until the open breaker lets a trial call through, None when calls go
        through now (closed, half-open, or open past its reset time)."""
        context = (await self._breaker()).context
        if context.state != OPENED or context.opened_at is None:
            return None
        left = context.opened_at + self.config.breaker_reset_s - time.time()
        return left if left > 0 else None

    def _circuit_open(self, opened: OpenedState) -> Unavailable:
        wait = max(0.0, opened.opened_at + self.config.breaker_reset_s - time.time())
        return Unavailable(
            f"the circuit to the {self.config.name} service is open after "
            f"{self.config.breaker_failures} consecutive failures; retry in "
            f"{math.ceil(wait)} s",
            reason="CIRCUIT_OPEN",
            metadata={"upstream": self.config.name},
            retry_after_s=wait,
        )

    async def _exchange(
        self, path: str, content: bytes, headers: Mapping[str, str], expect_json: bool
    ) -> Any:
        assert self._http is not None
        where = f"POST {path} of the {self.config.name} service ({self.config.setting})"
        try:
            async with asyncio.timeout(self.attempt_timeout_s):
                request = self._http.build_request("POST", path, content=content, headers=headers)
                response = await self._http.send(request, stream=True)
                try:
                    body = await self._read(response, where)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            raise _AttemptFailed(
                DeadlineExceeded(
                    f"{where} did not answer in time (connect timeout "
                    f"{self.config.connect_timeout_s:g} s, read timeout "
                    f"{self.config.read_timeout_s:g} s)",
                    reason="UPSTREAM_TIMEOUT",
                    metadata={"upstream": self.config.name},
                ),
                counts=True,
                retry=True,
            ) from None
        except httpx.HTTPError as exc:
            raise _AttemptFailed(
                UpstreamFailed(
                    f"{where} could not be reached: {type(exc).__name__}",
                    reason="UPSTREAM_UNREACHABLE",
                    metadata={"upstream": self.config.name},
                ),
                counts=True,
                retry=True,
            ) from None
        if response.status_code >= 400:
            raise _AttemptFailed(
                UpstreamFailed(
                    f"{where} answered HTTP {response.status_code}",
                    reason="UPSTREAM_STATUS",
                    metadata={
                        "upstream": self.config.name,
                        "upstreamStatus": str(response.status_code),
                    },
                ),
                counts=response.status_code >= 500,
                retry=response.status_code in RETRY_STATUSES,
            )
        if not expect_json:
            return None
        try:
            value = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise _AttemptFailed(
                UpstreamFailed(
                    f"{where} answered HTTP {response.status_code} with a body that is not "
                    f"JSON ({len(body)} bytes)",
                    reason="UPSTREAM_GARBAGE",
                    metadata={"upstream": self.config.name},
                ),
                counts=True,
                retry=False,
            ) from None
        problem = uncarriable(value)
        if problem is not None:
            raise _AttemptFailed(
                UpstreamFailed(
                    f"{where} answered JSON this server cannot pass on: {problem}",
                    reason="UPSTREAM_GARBAGE",
                    metadata={"upstream": self.config.name},
                ),
                counts=True,
                retry=False,
            )
        return value

    async def _read(self, response: httpx.Response, where: str) -> bytes:
        cap = self.config.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(where, f"declared {int(declared)} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise self._too_large(where, f"sent more than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, where: str, what: str) -> _AttemptFailed:
        return _AttemptFailed(
            UpstreamFailed(
                f"{where} answered a body over the {self.config.max_bytes}-byte cap "
                f"(UPSTREAM_MAX_BODY_BYTES): {what}",
                reason="UPSTREAM_TOO_LARGE",
                metadata={"upstream": self.config.name, "maxBytes": str(self.config.max_bytes)},
            ),
            counts=True,
            retry=False,
        )


def uncarriable(value: Any) -> str | None:
    """Why a decoded JSON value cannot become a google.protobuf.Value, or None: nested
    deeper than MAX_DEPTH (protobuf's recursion limit), an integer beyond a double's
    range, a string holding a lone surrogate (a `\\ud800` escape: not UTF-8)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and _lone_surrogate(key):
                    return "a member name with a lone surrogate (not UTF-8)"
                stack.append((child, depth + 1))
        elif isinstance(item, str) and _lone_surrogate(item):
            return "a string with a lone surrogate (not UTF-8)"
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > DOUBLE_MAX:
            return "an integer beyond the range of a double"
    return None


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259 §6), though Python's parser takes them."""
    raise ValueError(f"{name} is not JSON")


def trace_headers(trace_id: str, tenant_id: str | None) -> dict[str, str]:
    """The call's trace id as X-Stella-Trace-Id and, when it is a W3C trace id (32 hex
    digits, not all zero), a `traceparent` with a new parent id (W3C Trace Context §3.2);
    the tenant as X-Stella-Tenant."""
    headers = {_TRACE_ID: trace_id}
    lowered = trace_id.lower()
    if len(lowered) == 32 and all(c in "0123456789abcdef" for c in lowered) and lowered.strip("0"):
        headers["traceparent"] = f"00-{lowered}-{secrets.token_hex(8)}-01"
    if tenant_id:
        headers[_TENANT] = tenant_id
    return headers
