"""Each method's security contract, read once from the proto options.

The method's `policy` refines its service's `policy_defaults` through the one options
reader (gateway/options.py `effective_options`): singular fields with presence, a
method's `scopes` or `permissions` replace the service's, a method with no options at
all inherits them. Nothing here is keyed by path or name in code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from gateway.options import OptionKind, declared_options, effective_options
from orchestrator.api.v1 import options_pb2

POLICY_OPTIONS: Final = OptionKind(method=options_pb2.policy, service=options_pb2.policy_defaults)


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    full_method: str  # "/package.Service/Method", as gRPC names it
    authenticated: bool
    scopes: tuple[str, ...]
    tenant_mode: int
    operator_audit: bool
    permissions: tuple[str, ...]


def method_policy(method: MethodDescriptor) -> MethodPolicy:
    """The effective policy: authenticated unless AUTHENTICATION_NONE, not tenant scoped
    unless a tenant mode is set, audited only when OPERATOR_AUDIT_REQUIRED."""
    merged = effective_options(method, POLICY_OPTIONS)
    return MethodPolicy(
        full_method=f"/{method.containing_service.full_name}/{method.name}",
        authenticated=merged.authentication != options_pb2.AUTHENTICATION_NONE,
        scopes=tuple(merged.scopes),
        tenant_mode=merged.tenant or options_pb2.TENANT_MODE_NONE,
        operator_audit=merged.operator_audit == options_pb2.OPERATOR_AUDIT_REQUIRED,
        permissions=tuple(merged.permissions),
    )


def declares_policy(method: MethodDescriptor) -> bool:
    """Whether the method or its service carries policy options at all."""
    return any(part is not None for part in declared_options(method, POLICY_OPTIONS))


def policies_for(services: Iterable[ServiceDescriptor]) -> Mapping[str, MethodPolicy]:
    """Every method's policy by its gRPC path, `/package.Service/Method`."""
    table: dict[str, MethodPolicy] = {}
    for service in services:
        for method in service.methods:
            policy = method_policy(method)
            table[policy.full_method] = policy
    return table
