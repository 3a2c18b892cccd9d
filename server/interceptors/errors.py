"""The error funnel: domain errors become one rich `google.rpc.Status`; bugs become
INTERNAL with the trace id, logged with their traceback, which never leaves the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from google.rpc import status_pb2

from server import errors
from server.domain.context import current_call
from server.domain.errors import DomainError
from server.interceptors.base import WrappingInterceptor

log = logging.getLogger("orchestrator.errors")


async def abort_with_status(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    await context.abort(
        errors.grpc_code(status.code), status.message, errors.status_trailers(status)
    )


class ErrorInterceptor(WrappingInterceptor):
    @asynccontextmanager
    async def scope(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except DomainError as exc:
            await abort_with_status(context, errors.to_status(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            trace_id = current_call().trace_id
            log.exception("unhandled error in %s", method, extra={"trace_id": trace_id})
            await abort_with_status(context, errors.internal_status(trace_id))
