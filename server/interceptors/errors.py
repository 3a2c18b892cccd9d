"""The error funnel: domain errors become one rich `google.rpc.Status`; bugs become
INTERNAL with the trace id, logged with their traceback, which never leaves the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.rpc import status_pb2

from server import errors
from server.domain.context import CallContext
from server.domain.errors import DomainError
from server.interceptors.chain import Streaming, Unary

log = logging.getLogger("orchestrator.errors")


async def abort_with_status(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    await context.abort(
        errors.grpc_code(status.code), status.message, errors.status_trailers(status)
    )


class ErrorMapping:
    """Around everything after tracing: what leaves the chain is a status, never a
    traceback."""

    def unary(self, method: str, inner: Unary) -> Unary:
        async def mapped(request: Any, context: grpc.aio.ServicerContext, call: CallContext) -> Any:
            try:
                return await inner(request, context, call)
            except DomainError as exc:
                await abort_with_status(context, errors.to_status(exc))
            except grpc.aio.AbortError:
                raise
            except Exception:
                await _internal(method, context, call)

        return mapped

    def streaming(self, method: str, inner: Streaming) -> Streaming:
        async def mapped(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> AsyncIterator[Any]:
            try:
                async for item in inner(request, context, call):
                    yield item
            except DomainError as exc:
                await abort_with_status(context, errors.to_status(exc))
            except grpc.aio.AbortError:
                raise
            except Exception:
                await _internal(method, context, call)

        return mapped


async def _internal(method: str, context: grpc.aio.ServicerContext, call: CallContext) -> None:
    log.exception("unhandled error in %s", method, extra={"trace_id": call.trace_id})
    await abort_with_status(context, errors.internal_status(call.trace_id))
