"""The error funnel: domain errors become one rich `google.rpc.Status`; bugs become
INTERNAL with the trace id, logged with their traceback, which never leaves the process.
An exception the `unavailable` predicate recognises (the database unreachable:
`server.storage.db.connection_lost`) becomes UNAVAILABLE, which clients retry with
backoff (AIP-194), logged as a warning without the traceback.

The status is set on the call, not sent (`context.abort` sends it at once): grpc.aio
sends it when the handler returns, so the stages outside this one (metrics, tracing)
have recorded the call before its caller can see the answer. A caller that reads
`grpc_server_handled_total` right after a refused call finds it counted. A servicer's
own `context.abort` is deferred the same way by the chain's last stage (chain.py
`_DeferredAbort`); an `AbortError` that still reaches this stage passes through.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.rpc import status_pb2

from server import errors
from server.domain.context import CallContext
from server.domain.errors import DomainError, Unavailable
from server.interceptors.chain import Streaming, Unary

log = logging.getLogger("orchestrator.errors")

UNAVAILABLE = Unavailable(
    "the service cannot reach its database; retry with backoff", reason="DATABASE_UNAVAILABLE"
)


def end_with_status(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    """Make `status` the call's outcome, sent by grpc.aio once the handler returns:
    its code, its message as the details and the whole `google.rpc.Status` in the
    `grpc-status-details-bin` trailer (AIP-193)."""
    context.set_code(errors.grpc_code(status.code))
    context.set_details(status.message)
    context.set_trailing_metadata(errors.status_trailers(status))


class ErrorMapping:
    """Around everything after tracing: what leaves the chain is a status, never a
    traceback. `unavailable(exc)` tells an outage from a bug (default: none is)."""

    def __init__(self, unavailable: Callable[[BaseException], bool] | None = None) -> None:
        self._unavailable = unavailable or (lambda _exc: False)

    def unary(self, method: str, inner: Unary) -> Unary:
        async def mapped(request: Any, context: grpc.aio.ServicerContext, call: CallContext) -> Any:
            try:
                return await inner(request, context, call)
            except DomainError as exc:
                end_with_status(context, errors.to_status(exc))
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                self._unexpected(exc, method, context, call)
            return None

        return mapped

    def streaming(self, method: str, inner: Streaming) -> Streaming:
        async def mapped(
            request: Any, context: grpc.aio.ServicerContext, call: CallContext
        ) -> AsyncIterator[Any]:
            try:
                async for item in inner(request, context, call):
                    yield item
            except DomainError as exc:
                end_with_status(context, errors.to_status(exc))
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                self._unexpected(exc, method, context, call)

        return mapped

    def _unexpected(
        self,
        exc: Exception,
        method: str,
        context: grpc.aio.ServicerContext,
        call: CallContext,
    ) -> None:
        if self._unavailable(exc):
            log.warning(
                "%s: database unreachable (%s: %s); answering UNAVAILABLE",
                method,
                type(exc).__name__,
                exc,
                extra={"trace_id": call.trace_id},
            )
            end_with_status(context, errors.to_status(UNAVAILABLE))
            return
        log.exception("unhandled error in %s", method, extra={"trace_id": call.trace_id})
        end_with_status(context, errors.internal_status(call.trace_id))
