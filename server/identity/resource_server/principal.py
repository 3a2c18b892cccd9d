"""Who a verified access token speaks for, and how a refused token is answered.

`Principal` is what the resource-server interceptor hands on: the client, its
scopes and permissions, its tenancy (a bound tenant, or the tenants an operator
client may name), and the seed-003 reason/ticket claims that go into every audit
entry the token causes. `TokenRejected` carries the RFC 6750 §3.1 error and the
`WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1) for the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.domain.context import ControlClaims
from server.domain.errors import DomainError, InvalidArgument, Unauthenticated
from server.identity.challenges import credentials_required_challenge, resource_challenge


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    scopes: frozenset[str]
    tenant: str | None  # the bound tenant; None for an operator client
    tenants: frozenset[str]  # the tenants an operator client may act for
    permissions: frozenset[str]
    claims: ControlClaims
    jti: str
    expires_at: int
    dpop_bound: bool

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    def has_scopes(self, *required: str) -> bool:
        return all(scope in self.scopes for scope in required)

    def has_permissions(self, *required: str) -> bool:
        return all(permission in self.permissions for permission in required)

    def may_act_for(self, tenant: str) -> bool:
        """A bound client acts for its tenant only; an operator for its listed tenants."""
        return tenant == self.tenant if self.tenant is not None else tenant in self.tenants


def _strings(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name} must be a list of strings")
    return frozenset(value)


def _optional(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    return value


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal of validated claims; TypeError when a claim has the wrong shape."""
    scope = claims.get("scope", "")  # absent is no scope; any non-string (even []) is malformed
    if not isinstance(scope, str):
        raise TypeError("scope must be a space-separated string")
    cnf = claims.get("cnf")
    if cnf is not None and not (isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str)):
        # A confirmation we cannot read must not degrade to an unbound token.
        raise TypeError("cnf must be an object with a string jkt")
    tenant = _optional(claims, "tenant")
    return Principal(
        client_id=str(claims["client_id"]),
        scopes=frozenset(scope.split()),
        tenant=tenant,
        tenants=frozenset() if tenant is not None else _strings(claims.get("tenants"), "tenants"),
        permissions=_strings(claims.get("permissions"), "permissions"),
        claims=ControlClaims(
            quota_reason=_optional(claims, "quota_reason"),
            quota_ticket=_optional(claims, "quota_ticket"),
            backfill_reason=_optional(claims, "backfill_reason"),
            backfill_ticket=_optional(claims, "backfill_ticket"),
        ),
        jti=str(claims["jti"]),
        expires_at=int(claims["exp"]),
        dpop_bound=isinstance(cnf, dict) and bool(cnf.get("jkt")),
    )


class TokenRejected(Exception):
    """A refused access token: `error` is the RFC 6750/9449 code (None when credentials
    are simply missing, RFC 6750 §3.1), `challenge` the WWW-Authenticate value."""

    def __init__(self, error: str | None, description: str, *, scheme: str = "Bearer") -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.scheme = scheme

    @property
    def status(self) -> int:
        """The HTTP status RFC 6750 §3.1 gives the error: 400 or 401."""
        return 400 if self.error == "invalid_request" else 401

    @property
    def challenge(self) -> str:
        if self.error is None:
            return credentials_required_challenge()
        return resource_challenge(self.scheme, error=self.error, description=self.description)

    def to_domain_error(self) -> DomainError:
        """The domain error the error interceptor maps: UNAUTHENTICATED or INVALID_ARGUMENT,
        with the ErrorInfo reason set to the RFC error and the challenge as a trailer."""
        reason = self.error or "UNAUTHENTICATED"
        if self.status == 400:
            return InvalidArgument(self.description, reason=reason, challenge=self.challenge)
        return Unauthenticated(self.description, reason=reason, challenge=self.challenge)
