"""Keep the server's status when it ends a request-streaming call early (grpcio aio).

A server may end a client- or bidi-streaming call before it has read every request:
it fails after N messages, or answers early. Its trailers reach the gateway, and a
request the gateway is still sending fails. grpcio's asyncio client then replaces
the status it already holds with `INTERNAL: Internal error from Core` (grpc/grpc
issue 36066; the fix, pull request 43486, is not released as of grpcio 1.85), so a
caller would see a 500 where the server said, say, ABORTED. With 20 requests after
the failing one, about one call in three was reported INTERNAL.

`keep_server_status(call)` gives one call the behaviour of that fix: a failed
write does not overwrite a status already received, and when none is there yet it
waits `GRACE` seconds for the server's before reporting INTERNAL (a write Core
refused without ever delivering a status; grpc/grpc pull request 34148 added the
INTERNAL so such a call cannot hang). It reaches into grpcio's private call object
(`_cython_call`); if that is not there, the call is left as grpcio made it.
tests/conformance/test_client_streaming.py races it on every run.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

GRACE: Final = 1.0  # seconds a failed write waits for the server's own status


class _StatusKeepingCall:
    """Stands in for grpcio's Cython call object: everything delegated, except that
    `set_internal_error` yields to a status the server delivered."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._pending: asyncio.Task[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def set_internal_error(self, error: str) -> None:
        if self._inner.done() or self._pending is not None:
            return  # the server's status (or the wait for it) stands
        self._pending = asyncio.get_running_loop().create_task(self._await_status(error))

    async def _await_status(self, error: str) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._inner.status()), GRACE)
        except TimeoutError:
            if not self._inner.done():
                self._inner.set_internal_error(error)


def keep_server_status(call: Any) -> Any:
    """`call` (a grpc.aio stream-unary or stream-stream call, just made), with its
    failed writes no longer hiding the server's status."""
    inner = getattr(call, "_cython_call", None)
    if inner is not None and hasattr(inner, "set_internal_error") and hasattr(inner, "done"):
        call._cython_call = _StatusKeepingCall(inner)
    return call
