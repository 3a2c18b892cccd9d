"""What every stage of the interceptor chain reads of a call: its metadata, and
whether it came from this process.
"""

from __future__ import annotations

import grpc

from server.domain.errors import InvalidArgument


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


def sole_value(context: grpc.aio.ServicerContext, header: str) -> str | None:
    """The value of a header that must be sent at most once (tenant, project, operator
    reason and ticket), or None when absent.

    Raises InvalidArgument (reason DUPLICATE_HEADER) naming `header` when the call carries it
    more than once: taking the first silently would act for, or audit, something other than
    what a proxy or a later hop sees (RFC 9110 §5.3 allows repeating only list-valued fields).
    """
    values = invocation_values(context, header.lower())
    if len(values) > 1:
        raise InvalidArgument.of(header, f"send one {header} header", reason="DUPLICATE_HEADER")
    return values[0] if values else None
