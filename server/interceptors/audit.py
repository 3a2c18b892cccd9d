"""Operator audit headers: audited mutations must say why (DESIGN.md §4.1).

Methods whose proto policy says `operator_audit: OPERATOR_AUDIT_REQUIRED` need a
non-blank X-Stella-Operator-Reason and accept X-Stella-Operator-Ticket. The values
ride on the call context; the domain writes them into the audit entry in the same
transaction as the change.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from gateway.text import has_control
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument
from server.interceptors.base import sole_value
from server.interceptors.chain import Admission, Admit
from server.policy import MethodPolicy

REASON_HEADER = "X-Stella-Operator-Reason"
TICKET_HEADER = "X-Stella-Operator-Ticket"
REASON_MAX = 1024
TICKET_MAX = 256


def resolve_operator_headers(reason: str | None, ticket: str | None) -> tuple[str, str | None]:
    """The operator's (reason, ticket) from their headers, trimmed; the ticket None when
    absent. Raises InvalidArgument naming the header: reason missing or blank
    (OPERATOR_REASON_REQUIRED), either too long or with a control character. Over gRPC
    and HTTP a header cannot carry one (the gateway percent-encodes them); an in-process
    caller's could, and a NUL would reach PostgreSQL, which refuses it in text."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidArgument.of(
            REASON_HEADER,
            "header is required for this operation and must not be blank",
            reason="OPERATOR_REASON_REQUIRED",
        )
    if len(reason) > REASON_MAX:
        raise InvalidArgument.of(REASON_HEADER, f"must be at most {REASON_MAX} characters")
    if has_control(reason):
        raise InvalidArgument.of(REASON_HEADER, "must not contain control characters")
    ticket = (ticket or "").strip() or None
    if ticket is not None and len(ticket) > TICKET_MAX:
        raise InvalidArgument.of(TICKET_HEADER, f"must be at most {TICKET_MAX} characters")
    if ticket is not None and has_control(ticket):
        raise InvalidArgument.of(TICKET_HEADER, "must not contain control characters")
    return reason, ticket


class OperatorAudit(Admission):
    """Puts the operator's reason and ticket of audited methods on the call context."""

    def __init__(self, policies: Mapping[str, MethodPolicy]) -> None:
        self._policies = policies

    def admission(self, method: str) -> Admit | None:
        policy = self._policies.get(method)
        if policy is None or not policy.operator_audit:
            return None
        return _operator_headers


async def _operator_headers(context: grpc.aio.ServicerContext, call: CallContext) -> CallContext:
    reason, ticket = resolve_operator_headers(
        sole_value(context, REASON_HEADER), sole_value(context, TICKET_HEADER)
    )
    return call.with_(operator_reason=reason, operator_ticket=ticket)
