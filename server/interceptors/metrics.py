"""Request metrics of every call through the chain (server/observability/metrics.py).

The outermost stage: it times the whole chain, so a call refused by authentication
counts with its UNAUTHENTICATED like any other. Per method everything that can be
is worked out when the chain is built (the label values, the in-flight child, one
counter and histogram child per status code, created on a code's first use), so a
call costs two gauge updates, a counter increment and a histogram observation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from server.domain.context import CallContext
from server.interceptors.chain import Streaming, Unary
from server.observability.metrics import GRPC_HANDLED, GRPC_IN_FLIGHT, GRPC_SECONDS

_perf_counter = time.perf_counter


class _Outcomes:
    """The counter and histogram children of one method, by status code name."""

    __slots__ = ("_children", "_method", "_service")

    def __init__(self, service: str, method: str) -> None:
        self._service = service
        self._method = method
        self._children: dict[str, tuple[Any, Any]] = {}

    def record(self, code: str, seconds: float) -> None:
        children = self._children.get(code)
        if children is None:
            labels = (self._service, self._method, code)
            children = (GRPC_HANDLED.labels(*labels), GRPC_SECONDS.labels(*labels))
            self._children[code] = children
        children[0].inc()
        children[1].observe(seconds)


def split_method(method: str) -> tuple[str, str]:
    """`/package.Service/Method` as (`package.Service`, `Method`)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def status_set(context: grpc.aio.ServicerContext) -> str:
    """The status code name of a call whose handler returned: OK unless a code was set
    on the call (the error funnel sets the code of a refused call; errors.py)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK"


def status_of(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    """The status code name a call that raised `exc` ends with: the code it aborted
    with, CANCELLED for a cancelled call (or a stream its caller stopped reading),
    UNKNOWN for anything else."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN"


class CallMetrics:
    """The metrics stage; one instance per chain."""

    def unary(self, method: str, inner: Unary) -> Unary:
        service, name = split_method(method)
        in_flight = GRPC_IN_FLIGHT.labels(service, name)
        outcomes = _Outcomes(service, name)

        async def measured(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> Any:
            in_flight.inc()
            started = _perf_counter()
            code = "OK"
            try:
                response = await inner(request, context, call)
                code = status_set(context)
                return response
            except BaseException as exc:
                code = status_of(exc, context)
                raise
            finally:
                in_flight.dec()
                outcomes.record(code, _perf_counter() - started)

        return measured

    def streaming(self, method: str, inner: Streaming) -> Streaming:
        service, name = split_method(method)
        in_flight = GRPC_IN_FLIGHT.labels(service, name)
        outcomes = _Outcomes(service, name)

        async def measured(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> AsyncIterator[Any]:
            in_flight.inc()
            started = _perf_counter()
            code = "OK"
            try:
                async for item in inner(request, context, call):
                    yield item
                code = status_set(context)
            except BaseException as exc:
                code = status_of(exc, context)
                raise
            finally:
                in_flight.dec()
                outcomes.record(code, _perf_counter() - started)

        return measured
