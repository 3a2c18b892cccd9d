"""Tenant and project resolution for tenant-scoped methods (DESIGN.md §4.1, §4.3).

Whether a method is tenant scoped, and where its tenant comes from, is its proto
policy; who may act for which tenant is the verified token's (the authentication
interceptor runs first and puts it on the call context):

- header mode, client bound to a tenant: X-Stella-Tenant (legacy X-StellaOps-Tenant)
  is optional and, when sent, must name the bound tenant (else PERMISSION_DENIED);
- header mode, operator client: the header is required (INVALID_ARGUMENT naming it)
  and must name one of the client's tenants (else PERMISSION_DENIED);
- binding mode (the Orchestra cross-site API): the header is never read; the tenant
  is the client's binding, and an operator client, having none, is refused.
- platform mode (the platform's configuration and dependencies, issue 12 §7): no
  tenant; only operator clients may call, a client bound to a tenant is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import grpc

from orchestrator.api.v1 import options_pb2
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, PermissionDenied
from server.interceptors.base import sole_value
from server.interceptors.chain import Admission, Admit
from server.policy import MethodPolicy

TENANT_HEADER = "X-Stella-Tenant"
LEGACY_TENANT_HEADER = "X-StellaOps-Tenant"
PROJECT_HEADER = "X-Stella-Project"
# A tenant or project id; ECMA-262 compatible, so the OpenAPI documents carry this very
# pattern (server/http_surface.py).
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
IDENTIFIER_RULE: Final = (
    "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
)
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


def _checked(header: str, value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise InvalidArgument.of(header, IDENTIFIER_RULE, reason="INVALID_HEADER")
    return value


def resolve_tenant(current: str | None, legacy: str | None) -> str:
    tenant = named_tenant(current, legacy)
    if tenant is None:
        raise InvalidArgument.of(
            TENANT_HEADER, "header is required for this operation", reason="TENANT_REQUIRED"
        )
    return tenant


def named_tenant(current: str | None, legacy: str | None) -> str | None:
    """The tenant the headers name, checked for shape; None when neither is sent."""
    current = (current or "").strip() or None
    legacy = (legacy or "").strip() or None
    if current and legacy and current != legacy:
        raise InvalidArgument.of(
            TENANT_HEADER,
            f"disagrees with {LEGACY_TENANT_HEADER}; send one tenant",
            reason="TENANT_CONFLICT",
        )
    tenant = current or legacy
    if tenant is None:
        return None
    return _checked(TENANT_HEADER if current else LEGACY_TENANT_HEADER, tenant)


def tenant_for(call: CallContext, current: str | None, legacy: str | None) -> str:
    """The tenant of a header-mode call, as the caller's token allows it."""
    if not call.authenticated:
        return resolve_tenant(current, legacy)
    if call.bound_tenant is not None:
        named = named_tenant(current, legacy)
        if named is not None and named != call.bound_tenant:
            raise _forbidden(named, _header_used(current))
        return call.bound_tenant
    tenant = resolve_tenant(current, legacy)
    if tenant not in call.operator_tenants:
        raise _forbidden(tenant, _header_used(current))
    return tenant


def bound_tenant_of(call: CallContext) -> str:
    """The tenant of a binding-mode call: the client's immutable binding."""
    if call.bound_tenant is None:
        raise PermissionDenied(
            "this API needs a client bound to one tenant; operator clients cannot call it",
            reason="TENANT_BINDING_REQUIRED",
        )
    return call.bound_tenant


def _header_used(current: str | None) -> str:
    return TENANT_HEADER if (current or "").strip() else LEGACY_TENANT_HEADER


def _forbidden(tenant: str, header: str) -> PermissionDenied:
    return PermissionDenied(
        f"{header}: this access token may not act for tenant {tenant!r}",
        reason="TENANT_FORBIDDEN",
        metadata={"tenant": tenant},
    )


def resolve_project(value: str | None) -> str | None:
    value = (value or "").strip()
    return _checked(PROJECT_HEADER, value) if value else None


class Tenancy(Admission):
    """Resolves the tenant (and project) of tenant-scoped methods onto the call context."""

    def __init__(self, policies: Mapping[str, MethodPolicy]) -> None:
        self._policies = policies

    def admission(self, method: str) -> Admit | None:
        policy = self._policies.get(method)
        mode = policy.tenant_mode if policy is not None else options_pb2.TENANT_MODE_NONE
        if mode == options_pb2.TENANT_MODE_BINDING:
            return _by_binding
        if mode == options_pb2.TENANT_MODE_HEADER:
            return _by_header
        if mode == options_pb2.TENANT_MODE_PLATFORM:
            return _operators_only
        return None


async def _by_binding(context: grpc.aio.ServicerContext, call: CallContext) -> CallContext:
    return call.with_(tenant_id=bound_tenant_of(call))


async def _operators_only(context: grpc.aio.ServicerContext, call: CallContext) -> CallContext:
    if call.bound_tenant is not None:
        raise PermissionDenied(
            "this operation is platform level: it needs an operator client, not one bound "
            "to a tenant",
            reason="OPERATOR_CLIENT_REQUIRED",
        )
    return call


async def _by_header(context: grpc.aio.ServicerContext, call: CallContext) -> CallContext:
    tenant = tenant_for(
        call, sole_value(context, TENANT_HEADER), sole_value(context, LEGACY_TENANT_HEADER)
    )
    project = resolve_project(sole_value(context, PROJECT_HEADER))
    return call.with_(tenant_id=tenant, project_id=project)
