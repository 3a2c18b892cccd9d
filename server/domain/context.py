"""Who is calling, for which tenant, and why: resolved once per call by the interceptors.

The interceptors fill a `CallContext` and publish it in a context variable; servicers
hand it to domain functions explicitly, so the domain never reads transport headers.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, replace

from server.domain.errors import FailedPrecondition


@dataclass(frozen=True, slots=True)
class CallContext:
    method: str
    trace_id: str
    actor: str = "anonymous"
    tenant_id: str | None = None
    project_id: str | None = None
    operator_reason: str | None = None
    operator_ticket: str | None = None

    def with_(self, **changes: str | None) -> CallContext:
        return replace(self, **changes)  # type: ignore[arg-type]

    def require_tenant(self) -> str:
        """The tenant of a tenant-scoped call; its absence is a server wiring bug."""
        if self.tenant_id is None:
            raise FailedPrecondition(f"{self.method} has no tenant", reason="TENANT_UNRESOLVED")
        return self.tenant_id


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
