"""Tenant and project resolution for tenant-scoped methods (DESIGN.md §4.1).

Whether a method is tenant scoped, and where its tenant comes from, is its proto
policy. Header-mode methods read X-Stella-Tenant (legacy X-StellaOps-Tenant); a
missing header is INVALID_ARGUMENT naming it. Authentication (a later layer) narrows
which tenants a caller may name; this layer only resolves.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import grpc

from orchestrator.api.v1 import options_pb2
from server.domain.context import current_call, reset_current_call, set_current_call
from server.domain.errors import InvalidArgument
from server.interceptors.base import WrappingInterceptor, invocation_value
from server.policy import MethodPolicy

TENANT_HEADER = "X-Stella-Tenant"
LEGACY_TENANT_HEADER = "X-StellaOps-Tenant"
PROJECT_HEADER = "X-Stella-Project"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _checked(header: str, value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise InvalidArgument.of(
            header,
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            reason="INVALID_HEADER",
        )
    return value


def resolve_tenant(current: str | None, legacy: str | None) -> str:
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
        raise InvalidArgument.of(
            TENANT_HEADER, "header is required for this operation", reason="TENANT_REQUIRED"
        )
    return _checked(TENANT_HEADER if current else LEGACY_TENANT_HEADER, tenant)


def resolve_project(value: str | None) -> str | None:
    value = (value or "").strip()
    return _checked(PROJECT_HEADER, value) if value else None


class TenancyInterceptor(WrappingInterceptor):
    def __init__(self, policies: Mapping[str, MethodPolicy]) -> None:
        super().__init__()
        self._policies = policies

    @asynccontextmanager
    async def scope(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        policy = self._policies.get(method)
        if policy is None or policy.tenant_mode != options_pb2.TENANT_MODE_HEADER:
            yield
            return
        tenant = resolve_tenant(
            invocation_value(context, TENANT_HEADER.lower()),
            invocation_value(context, LEGACY_TENANT_HEADER.lower()),
        )
        project = resolve_project(invocation_value(context, PROJECT_HEADER.lower()))
        token = set_current_call(current_call().with_(tenant_id=tenant, project_id=project))
        try:
            yield
        finally:
            reset_current_call(token)
