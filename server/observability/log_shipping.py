"""LOG_COLLECTOR_URL: the server's structured log lines, also POSTed to a log collector
in batches (seed 002 "If set, emits structured logs to log-collector"; issue 13 point 5).

Shape: each request is `POST <LOG_COLLECTOR_URL>` with `Content-Type:
application/json` and a JSON array body, each item one line exactly as written to
stderr (`server/logs.py`): `{"time", "level", "logger", "message"}` plus `trace_id`
and `exception` when there are any, in the order the lines were logged.

Never in a request's way:

- `LogShipper` is a `logging.Handler` whose `emit` only formats the record (in the
  caller's context, so the line carries the call's trace id) and puts it on a
  bounded in-memory queue (`LOG_SHIPPING_QUEUE_MAX` lines), without waiting: when
  the queue is full the line is dropped and counted.
- One background asyncio task drains it: a full batch (`LOG_SHIPPING_BATCH_MAX`
  lines) leaves as soon as it is queued; fewer lines leave at the latest
  `LOG_SHIPPING_INTERVAL_SECONDS` after the previous drain. Each is posted with
  httpx and a total timeout of `LOG_SHIPPING_TIMEOUT_SECONDS`. A batch the collector
  refuses (not 2xx), or that fails or times out, is dropped and counted, not
  retried: a collector that is down must not make the server hold ever more lines.
  The first failure of a streak and the recovery are logged (to stderr; the shipper
  never ships its own lines or its HTTP client's).
- On shutdown (`aclose`) what is queued is posted within a bounded time; lines still
  queued then are dropped and counted.

Metrics (Prometheus, server/observability/metrics.py conventions):
`orchestrator_log_lines_shipped_total` (lines a collector accepted) and
`orchestrator_log_lines_dropped_total{reason}` with reason `queue_full`,
`collector_failed` or `shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import queue
import time
from typing import Final

import httpx
from prometheus_client import Counter

from server.logs import JsonFormatter

log = logging.getLogger("orchestrator.log_shipping")

QUEUE_FULL: Final = "queue_full"
COLLECTOR_FAILED: Final = "collector_failed"
SHUTDOWN: Final = "shutdown"

SHIPPED: Final = Counter(
    "orchestrator_log_lines_shipped_total",
    "Log lines the log collector (LOG_COLLECTOR_URL) accepted.",
)
DROPPED: Final = Counter(
    "orchestrator_log_lines_dropped_total",
    "Log lines not delivered to the log collector (LOG_COLLECTOR_URL), by reason: "
    "queue_full (the bounded queue was full), collector_failed (the batch's POST failed, "
    "timed out or was not answered 2xx), shutdown (still queued when the flush time ran out).",
    ("reason",),
)
for _reason in (QUEUE_FULL, COLLECTOR_FAILED, SHUTDOWN):
    DROPPED.labels(_reason)  # exposed at 0 from the start

# True inside the shipper's own task: its lines (and its HTTP client's) are not shipped,
# or each batch would log lines that make the next batch.
_shipping: contextvars.ContextVar[bool] = contextvars.ContextVar("log_shipping", default=False)


class _NotWhileShipping(logging.Filter):
    """Keeps httpx's per-request INFO lines of the shipper's own posts off every handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _shipping.get()


class LogShipper(logging.Handler):
    """A handler that queues lines for the collector at `url`; `start()` (in the event
    loop) begins the shipping, `aclose()` flushes and stops it.

    `queue_max` lines at most wait; a batch holds at most `batch_max` lines; a batch
    leaves at the latest `interval` seconds after the previous drain; a post is given
    `timeout` seconds in all."""

    def __init__(
        self,
        url: str,
        *,
        queue_max: int = 10_000,
        batch_max: int = 500,
        interval: float = 1.0,
        timeout: float = 5.0,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.url = url
        self._formatter = JsonFormatter()
        self._lines: queue.Queue[dict[str, object]] = queue.Queue(maxsize=queue_max)
        self._batch_max = batch_max
        self._interval = interval
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._wake_sent = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._failing = False
        self._filter = _NotWhileShipping()

    # --- the logging side: any thread, never waits ------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if _shipping.get():
            return
        try:
            line = self._formatter.entry(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            DROPPED.labels(QUEUE_FULL).inc()
            return
        if self._lines.qsize() >= self._batch_max and not self._wake_sent:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                self._wake_sent = True
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._wake.set)

    # --- the shipping side: one task in the server's event loop -----------------------

    def start(self) -> None:
        """Begin shipping from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        logging.getLogger("httpx").addFilter(self._filter)
        logging.getLogger("httpcore").addFilter(self._filter)
        self._task = asyncio.create_task(self._run(), name="log-shipper")

    @property
    def queued(self) -> int:
        """Lines waiting to be shipped."""
        return self._lines.qsize()

    async def _run(self) -> None:
        _shipping.set(True)
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
                timed_out = False
            except TimeoutError:
                timed_out = True
            self._wake.clear()
            self._wake_sent = False
            await self._drain(partial=timed_out or self._closing)

    async def _drain(self, *, partial: bool) -> None:
        """Post full batches while there are any; then, with `partial` (the interval
        passed, or closing), what is left."""
        while self._lines.qsize() >= self._batch_max or (partial and self._lines.qsize()):
            batch = self._take()
            if not batch:
                return
            await self._post(batch)

    def _take(self) -> list[dict[str, object]]:
        batch: list[dict[str, object]] = []
        while len(batch) < self._batch_max:
            try:
                batch.append(self._lines.get_nowait())
            except queue.Empty:
                break
        return batch

    async def _post(self, batch: list[dict[str, object]]) -> None:
        assert self._client is not None
        body = json.dumps(batch, ensure_ascii=False, default=str).encode()
        problem: str | None = None
        try:
            response = await self._client.post(
                self.url, content=body, headers={"Content-Type": "application/json"}
            )
        except asyncio.CancelledError:
            DROPPED.labels(SHUTDOWN).inc(len(batch))
            raise
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if not response.is_success:
                problem = f"answered HTTP {response.status_code}"
        if problem is None:
            SHIPPED.inc(len(batch))
            if self._failing:
                self._failing = False
                log.info("the log collector answers again; shipping log lines")
            return
        DROPPED.labels(COLLECTOR_FAILED).inc(len(batch))
        if not self._failing:
            self._failing = True
            log.warning(
                "the log collector (LOG_COLLECTOR_URL) failed: %s; %d log lines dropped, "
                "and lines keep being dropped until it answers",
                problem,
                len(batch),
            )

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop queueing, post what is queued within `timeout` seconds, count what could
        not be posted (reason `shutdown`), and stop. Idempotent."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            deadline = time.monotonic() + timeout
            # On timeout wait_for cancels the task; its batch in flight is counted.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, timeout)
            remaining = deadline - time.monotonic()
            if remaining > 0 and self._lines.qsize():
                flush = asyncio.create_task(self._flush())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flush, remaining)
        left = 0
        while self._take_one():
            left += 1
        if left:
            DROPPED.labels(SHUTDOWN).inc(left)
        logging.getLogger("httpx").removeFilter(self._filter)
        logging.getLogger("httpcore").removeFilter(self._filter)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _flush(self) -> None:
        _shipping.set(True)
        await self._drain(partial=True)

    def _take_one(self) -> bool:
        try:
            self._lines.get_nowait()
        except queue.Empty:
            return False
        return True


def install(
    url: str, *, queue_max: int, batch_max: int, interval: float, timeout: float
) -> LogShipper:
    """A started shipper attached to the root logger (the level the root logger lets
    through is what is shipped, as on stderr). Call from the running event loop."""
    shipper = LogShipper(
        url, queue_max=queue_max, batch_max=batch_max, interval=interval, timeout=timeout
    )
    logging.getLogger().addHandler(shipper)
    shipper.start()
    return shipper


async def uninstall(shipper: LogShipper, *, timeout: float) -> None:
    """Detach `shipper` from the root logger, then flush it within `timeout` seconds."""
    logging.getLogger().removeHandler(shipper)
    await shipper.aclose(timeout)
