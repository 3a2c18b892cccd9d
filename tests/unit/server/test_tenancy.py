"""Who may name which tenant (DESIGN.md §4.1, issue 4 item 5), as a table."""

from __future__ import annotations

import pytest

from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, PermissionDenied
from server.interceptors.tenancy import bound_tenant_of, tenant_for

ANONYMOUS = CallContext(method="/m", trace_id="t")
BOUND = ANONYMOUS.with_(authenticated=True, bound_tenant="acme")
OPERATOR = ANONYMOUS.with_(authenticated=True, operator_tenants=frozenset({"acme", "beta"}))


@pytest.mark.parametrize(
    ("call", "current", "legacy", "tenant"),
    [
        (BOUND, None, None, "acme"),  # a bound client's header is optional
        (BOUND, "acme", None, "acme"),
        (BOUND, None, "acme", "acme"),  # legacy header
        (BOUND, "  ", None, "acme"),  # blank counts as absent
        (OPERATOR, "beta", None, "beta"),
        (OPERATOR, None, "acme", "acme"),
        (ANONYMOUS, "anything", None, "anything"),  # an unauthenticated tenant method
    ],
)
def test_allowed(call: CallContext, current: str | None, legacy: str | None, tenant: str) -> None:
    assert tenant_for(call, current, legacy) == tenant


@pytest.mark.parametrize(
    ("call", "current", "legacy", "error", "reason"),
    [
        (BOUND, "beta", None, PermissionDenied, "TENANT_FORBIDDEN"),
        (BOUND, None, "beta", PermissionDenied, "TENANT_FORBIDDEN"),
        (BOUND, "bad tenant!", None, InvalidArgument, "INVALID_HEADER"),
        (BOUND, "acme", "beta", InvalidArgument, "TENANT_CONFLICT"),
        (OPERATOR, None, None, InvalidArgument, "TENANT_REQUIRED"),
        (OPERATOR, "gamma", None, PermissionDenied, "TENANT_FORBIDDEN"),
        (ANONYMOUS, None, None, InvalidArgument, "TENANT_REQUIRED"),
    ],
)
def test_refused(
    call: CallContext,
    current: str | None,
    legacy: str | None,
    error: type[Exception],
    reason: str,
) -> None:
    with pytest.raises(error) as caught:
        tenant_for(call, current, legacy)
    assert getattr(caught.value, "reason", None) == reason


def test_binding_mode_takes_the_binding_and_refuses_operators() -> None:
    assert bound_tenant_of(BOUND) == "acme"
    with pytest.raises(PermissionDenied) as caught:
        bound_tenant_of(OPERATOR)
    assert caught.value.reason == "TENANT_BINDING_REQUIRED"
