"""Who is calling, for which tenant, and why: resolved once per call by the interceptors.

The interceptors fill a `CallContext` and publish it in a context variable; servicers
hand it to domain functions explicitly, so the domain never reads transport headers.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field, fields
from typing import Any

from server.domain.errors import FailedPrecondition


@dataclass(frozen=True, slots=True)
class ControlClaims:
    """The justification of capacity-affecting scopes (seed 003), carried by the token
    and copied onto every audit entry the token causes."""

    quota_reason: str | None = None
    quota_ticket: str | None = None
    backfill_reason: str | None = None
    backfill_ticket: str | None = None


@dataclass(frozen=True, slots=True)
class CallContext:
    method: str
    trace_id: str
    actor: str = "anonymous"  # the OAuth client id of an authenticated call
    token_id: str | None = None  # the access token's `jti`
    scopes: frozenset[str] = field(default_factory=frozenset)
    control: ControlClaims = field(default_factory=ControlClaims)
    authenticated: bool = False
    bound_tenant: str | None = None  # the immutable tenant of a bound client
    operator_tenants: frozenset[str] = field(default_factory=frozenset)  # operator clients
    tenant_id: str | None = None
    project_id: str | None = None
    operator_reason: str | None = None
    operator_ticket: str | None = None

    def with_(self, **changes: Any) -> CallContext:
        """A copy with `changes`, as dataclasses.replace (TypeError for a name that is
        not a field) at under half its cost: every call of the chain makes two."""
        unknown = changes.keys() - _CALL_FIELDS
        if unknown:
            raise TypeError(f"CallContext has no field {', '.join(sorted(unknown))}")
        clone = object.__new__(CallContext)
        for name in _CALL_FIELDS_ORDERED:
            value = changes[name] if name in changes else getattr(self, name)
            object.__setattr__(clone, name, value)
        return clone

    def require_tenant(self) -> str:
        """The tenant of a tenant-scoped call; its absence is a server wiring bug."""
        if self.tenant_id is None:
            raise FailedPrecondition(f"{self.method} has no tenant", reason="TENANT_UNRESOLVED")
        return self.tenant_id


_CALL_FIELDS_ORDERED: tuple[str, ...] = tuple(f.name for f in fields(CallContext))
_CALL_FIELDS: frozenset[str] = frozenset(_CALL_FIELDS_ORDERED)

_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "orchestrator_call", default=None
)


def current_call() -> CallContext:
    call = _current.get()
    if call is None:
        raise RuntimeError("no call context: the interceptor chain did not run")
    return call


def set_current_call(call: CallContext) -> contextvars.Token[CallContext | None]:
    return _current.set(call)


def reset_current_call(token: contextvars.Token[CallContext | None]) -> None:
    _current.reset(token)
