"""LOG_COLLECTOR_URL (issue 13 point 5, server/observability/log_shipping.py) against a
real HTTP collector started by the test on a loopback port (uvicorn serving a tiny
ASGI app that records every request): the batches and their exact lines, batching by
size and by time, the flush at shutdown, a hanging collector that never delays a
request, and the exact counts of dropped lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY

from server.app import Application
from server.config import Settings
from server.domain.context import CallContext, reset_current_call, set_current_call
from server.observability.log_shipping import LogShipper

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@dataclass
class Collector:
    """A log collector: records each request; `mode` is ok (204), fail (500) or hang
    (never answers until `release` is set)."""

    mode: str = "ok"
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((scope["method"], scope["path"], headers, body))
        if self.mode == "hang":
            await self.release.wait()
        status = 500 if self.mode == "fail" else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def batches(self, logger: str | None = None) -> list[list[dict[str, Any]]]:
        """Every batch received (its lines of `logger` only, when given; empty batches
        left out then)."""
        found = []
        for _, _, _, body in self.requests:
            lines = json.loads(body)
            if logger is not None:
                lines = [line for line in lines if line["logger"] == logger]
            if lines:
                found.append(lines)
        return found


class _Quiet(uvicorn.Server):
    """uvicorn without its signal handlers (the test process keeps its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    made = Collector()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    made.url = f"http://127.0.0.1:{sock.getsockname()[1]}/ingest/logs"
    config = uvicorn.Config(
        made, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = _Quiet(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started)
    try:
        yield made
    finally:
        made.release.set()
        server.should_exit = True
        await task
        sock.close()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("orchestrator_log_lines_dropped_total", {"reason": reason})
    return value or 0.0


def shipped() -> float:
    return REGISTRY.get_sample_value("orchestrator_log_lines_shipped_total") or 0.0


def private_logger(name: str) -> logging.Logger:
    """A logger only this test writes to, feeding only `shipper`'s handler."""
    logger = logging.getLogger(name)
    logger.handlers[:] = []
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


async def test_lines_arrive_in_size_batches_with_exact_fields_and_the_rest_at_close(
    collector: Collector,
) -> None:
    shipper = LogShipper(collector.url, queue_max=100, batch_max=3, interval=60.0, timeout=5.0)
    logger = private_logger("test.shipping.size")
    logger.addHandler(shipper)
    shipper.start()
    before = shipped()
    token = set_current_call(CallContext(method="/x/Y", trace_id="trace-abc"))
    try:
        logger.warning("line %d of %s", 1, "seven")
    finally:
        reset_current_call(token)
    for n in range(2, 7):
        logger.info("line %d", n)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("line 7 failed")
    await until(lambda: len(collector.requests) == 2)  # two full batches, no waiting
    await asyncio.sleep(0.2)
    assert len(collector.requests) == 2  # the 7th waits for the interval (60 s) ...
    await shipper.aclose(timeout=2)  # ... or the close, which flushes it
    logger.removeHandler(shipper)

    method, path, headers, _ = collector.requests[0]
    assert (method, path, headers["content-type"]) == ("POST", "/ingest/logs", "application/json")
    batches = collector.batches()
    assert [len(batch) for batch in batches] == [3, 3, 1]
    lines = [line for batch in batches for line in batch]
    first = lines[0]
    assert TIME.match(first.pop("time"))
    assert first == {
        "level": "warning",
        "logger": "test.shipping.size",
        "message": "line 1 of seven",
        "trace_id": "trace-abc",
    }
    assert [line["message"] for line in lines[1:6]] == [f"line {n}" for n in range(2, 7)]
    assert set(lines[1]) == {"time", "level", "logger", "message"}  # no call: no trace id
    last = lines[6]
    assert (last["level"], last["message"]) == ("error", "line 7 failed")
    assert last["exception"].startswith("Traceback (most recent call last):")
    assert last["exception"].endswith("ValueError: boom")
    assert shipped() - before == 7


async def test_a_partial_batch_leaves_after_the_interval(collector: Collector) -> None:
    shipper = LogShipper(collector.url, queue_max=100, batch_max=100, interval=0.2, timeout=5.0)
    logger = private_logger("test.shipping.time")
    logger.addHandler(shipper)
    shipper.start()
    try:
        logger.info("a")
        logger.info("b")
        started = time.monotonic()
        await until(lambda: len(collector.requests) == 1)
        waited = time.monotonic() - started
        assert [[line["message"] for line in batch] for batch in collector.batches()] == [
            ["a", "b"]
        ]
        assert waited < 1.0  # one interval (0.2 s), not more
    finally:
        await shipper.aclose(timeout=1)
        logger.removeHandler(shipper)


async def test_overflow_and_a_hanging_collector_count_every_dropped_line(
    collector: Collector,
) -> None:
    collector.mode = "hang"
    shipper = LogShipper(collector.url, queue_max=10, batch_max=10, interval=60.0, timeout=30.0)
    logger = private_logger("test.shipping.overflow")
    logger.addHandler(shipper)
    shipper.start()
    full, shutdown = dropped("queue_full"), dropped("shutdown")
    for n in range(25):  # no await in between: the shipper cannot drain meanwhile
        logger.info("first %d", n)
    assert dropped("queue_full") - full == 15
    await until(lambda: len(collector.requests) == 1)  # 10 taken, their POST hangs
    assert shipper.queued == 0
    for n in range(25):
        logger.info("second %d", n)
    assert dropped("queue_full") - full == 30
    assert shipper.queued == 10

    started = time.monotonic()
    await shipper.aclose(timeout=0.5)  # the hanging POST is given up, nothing waits longer
    assert time.monotonic() - started < 1.5
    logger.removeHandler(shipper)
    assert dropped("shutdown") - shutdown == 20  # 10 in flight + 10 still queued
    [batch] = collector.batches()
    assert [line["message"] for line in batch] == [f"first {n}" for n in range(10)]


async def test_a_failing_collector_counts_its_lost_lines(collector: Collector) -> None:
    collector.mode = "fail"
    shipper = LogShipper(collector.url, queue_max=100, batch_max=4, interval=60.0, timeout=5.0)
    logger = private_logger("test.shipping.fail")
    logger.addHandler(shipper)
    shipper.start()
    failed, ok = dropped("collector_failed"), shipped()
    try:
        for n in range(4):
            logger.info("lost %d", n)
        await until(lambda: dropped("collector_failed") - failed == 4)
        collector.mode = "ok"
        for n in range(4):
            logger.info("kept %d", n)
        await until(lambda: shipped() - ok == 4)
    finally:
        await shipper.aclose(timeout=1)
        logger.removeHandler(shipper)
    assert dropped("collector_failed") - failed == 4
    assert [[line["message"] for line in b] for b in collector.batches()] == [
        [f"lost {n}" for n in range(4)],
        [f"kept {n}" for n in range(4)],
    ]


def collector_settings(collector: Collector, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        grpc_port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'shipping.db'}",
        shutdown_grace_seconds=1,
        log_collector_url=collector.url,
        log_shipping_queue_max=200,
        log_shipping_batch_max=50,
        log_shipping_interval_seconds=0.05,
        log_shipping_timeout_seconds=2.0,
    )


async def test_the_server_ships_its_lines_and_a_hanging_collector_never_delays_requests(
    collector: Collector, tmp_path: Path
) -> None:
    app = Application(collector_settings(collector, tmp_path))
    await app.start()
    try:
        await _ship_and_hang(app, collector)
    finally:
        started = time.monotonic()
        await app.stop(grace=1)  # bounded flush: the hanging collector cannot hold the stop
        stopping = time.monotonic() - started
    assert stopping < 6.0  # the flush gives up after LOG_SHIPPING_TIMEOUT_SECONDS (2)


async def _ship_and_hang(app: Application, collector: Collector) -> None:
    assert app.log_shipper is not None
    server_log = logging.getLogger("orchestrator.test-shipping")
    server_log.warning("shipped by the server")
    await until(lambda: bool(collector.batches("orchestrator.test-shipping")))
    [[line]] = collector.batches("orchestrator.test-shipping")
    assert {k: line[k] for k in ("level", "logger", "message")} == {
        "level": "warning",
        "logger": "orchestrator.test-shipping",
        "message": "shipped by the server",
    }

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as http:
        baseline = []
        for _ in range(10):
            started = time.perf_counter()
            assert (await http.get("/health")).status_code == 200
            baseline.append(time.perf_counter() - started)

        collector.mode = "hang"
        hung_before = len(collector.requests)
        full = dropped("queue_full")
        server_log.warning("this batch hangs")
        await until(lambda: len(collector.requests) > hung_before)  # a POST is hanging now
        latencies, logging_seconds = [], []
        for round_ in range(10):
            started = time.perf_counter()
            for n in range(100):  # 100 lines per request: the 200-line queue overflows
                server_log.warning("flood %d.%d", round_, n)
            logging_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert (await http.get("/health")).status_code == 200
            latencies.append(time.perf_counter() - started)
        measured = (
            f"GET /health p-max {max(baseline) * 1e3:.1f} ms before, "
            f"{max(latencies) * 1e3:.1f} ms while the collector hangs; "
            f"100 lines logged in at most {max(logging_seconds) * 1e3:.2f} ms"
        )
        assert dropped("queue_full") - full >= 800  # 1,000 lines, at most 200 queued
        # The collector hangs for its whole 2 s timeout; requests do not notice it.
        assert max(latencies) < 0.5, measured
        assert max(logging_seconds) < 0.1, measured  # 100 lines enqueue in well under 1 ms each
