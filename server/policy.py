"""Each method's security contract, read once from the proto options.

Method options refine the service's `policy_defaults` field by field; a method with
no options at all inherits them. Nothing here is keyed by path or name in code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor

from orchestrator.api.v1 import options_pb2


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    full_method: str  # "/package.Service/Method", as gRPC names it
    authenticated: bool
    scopes: tuple[str, ...]
    tenant_mode: int
    operator_audit: bool
    permissions: tuple[str, ...]


def _merge(
    defaults: options_pb2.MethodPolicy, own: options_pb2.MethodPolicy
) -> options_pb2.MethodPolicy:
    merged = options_pb2.MethodPolicy()
    merged.CopyFrom(defaults)
    if own.authentication:
        merged.authentication = own.authentication
    if own.tenant:
        merged.tenant = own.tenant
    if own.operator_audit:
        merged.operator_audit = own.operator_audit
    if own.scopes:
        del merged.scopes[:]
        merged.scopes.extend(own.scopes)
    if own.permissions:
        del merged.permissions[:]
        merged.permissions.extend(own.permissions)
    return merged


def policies_for(services: Iterable[ServiceDescriptor]) -> Mapping[str, MethodPolicy]:
    table: dict[str, MethodPolicy] = {}
    for service in services:
        defaults = service.GetOptions().Extensions[options_pb2.policy_defaults]
        for method in service.methods:
            merged = _merge(defaults, method.GetOptions().Extensions[options_pb2.policy])
            full = f"/{service.full_name}/{method.name}"
            table[full] = MethodPolicy(
                full_method=full,
                authenticated=merged.authentication != options_pb2.AUTHENTICATION_NONE,
                scopes=tuple(merged.scopes),
                tenant_mode=merged.tenant or options_pb2.TENANT_MODE_NONE,
                operator_audit=merged.operator_audit == options_pb2.OPERATOR_AUDIT_REQUIRED,
                permissions=tuple(merged.permissions),
            )
    return table
