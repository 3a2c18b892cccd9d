"""REST request metrics are recorded as the last of the response goes out: a client
that has its whole answer and then scrapes /metrics finds its request counted and no
longer in flight (CI once found a refused call uncounted right after its answer)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.app import PATH_PATTERN_KEY
from gateway.router import Router
from server.observability.http_metrics import HttpMetrics
from server.observability.metrics import HTTP_IN_FLIGHT, HTTP_REQUESTS

ROUTE = "/unit/http-metrics/{thing}"


def _counted(status: str) -> float:
    return float(HTTP_REQUESTS.labels("PATCH", ROUTE, status)._value.get())


def _in_flight() -> float:
    return float(HTTP_IN_FLIGHT.labels("PATCH")._value.get())


async def test_a_request_is_counted_before_its_last_body_part_is_sent() -> None:
    finished = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PATH_PATTERN_KEY] = ROUTE
        await send({"type": "http.response.start", "status": 409, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        await send({"type": "http.response.body", "body": b"}"})
        # Work after the answer (a background task) does not delay the count.
        await finished.wait()

    seen: list[tuple[bool, float, float]] = []
    counted, in_flight = _counted("409"), _in_flight()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            seen.append((message.get("more_body", False), _counted("409"), _in_flight()))

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: dict[str, Any] = {"type": "http", "method": "PATCH", "path": "/unit/http-metrics/a"}
    serving = asyncio.ensure_future(HttpMetrics(app, Router())(scope, receive, send))
    await asyncio.sleep(0.05)
    assert seen == [(True, counted, in_flight + 1), (False, counted + 1, in_flight)]
    finished.set()
    await serving
    assert (_counted("409"), _in_flight()) == (counted + 1, in_flight)


async def test_an_app_that_fails_before_answering_is_counted_once_as_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PATH_PATTERN_KEY] = ROUTE
        raise RuntimeError("a bug")

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    counted, in_flight = _counted("500"), _in_flight()
    scope: dict[str, Any] = {"type": "http", "method": "PATCH", "path": "/unit/http-metrics/b"}
    with pytest.raises(RuntimeError, match=r"^a bug$"):
        await HttpMetrics(app, Router())(scope, receive, send)
    assert (_counted("500"), _in_flight()) == (counted + 1, in_flight)
