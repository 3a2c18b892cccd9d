"""What every stage of the interceptor chain reads of a call: its metadata, and
whether it came from this process.
"""

from __future__ import annotations

import grpc


def invocation_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """The first value of a (lower-case) metadata key, or None."""
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def invocation_values(context: grpc.aio.ServicerContext, key: str) -> list[str]:
    """Every value of a (lower-case) metadata key, in order: for headers that must be sent
    at most once (Authorization, DPoP)."""
    values = []
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            values.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return values


def is_in_process(context: grpc.aio.ServicerContext) -> bool:
    """Whether the call never left this process: its servicer context says so with an
    `in_process` attribute that is exactly True (the in-process gateway's does). No
    metadata, peer string or anything else a network caller sends can make it so; a
    grpc.aio context has no such attribute."""
    return getattr(context, "in_process", False) is True
