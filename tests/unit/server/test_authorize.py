"""Scopes from the token and permissions from the client's role, checked per method
policy (issue 4 items 4-5); the Orchestra API needs a permission, not a scope."""

from __future__ import annotations

import pytest

from orchestrator.api.v1 import options_pb2
from server.domain.context import ControlClaims
from server.domain.errors import PermissionDenied
from server.identity.resource_server.principal import Principal
from server.interceptors.authentication import authorize
from server.policy import MethodPolicy


def _policy(scopes: tuple[str, ...] = (), permissions: tuple[str, ...] = ()) -> MethodPolicy:
    return MethodPolicy(
        full_method="/pkg.Service/Method",
        authenticated=True,
        scopes=scopes,
        tenant_mode=options_pb2.TENANT_MODE_BINDING,
        operator_audit=False,
        permissions=permissions,
    )


def _principal(scopes: set[str], permissions: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        client_id="c",
        scopes=frozenset(scopes),
        tenant="acme",
        tenants=frozenset(),
        permissions=frozenset(permissions),
        claims=ControlClaims(),
        jti="j",
        expires_at=0,
        dpop_bound=False,
    )


def test_every_listed_scope_is_needed() -> None:
    authorize(_policy(("orch:read",)), _principal({"orch:read", "orch:quota"}), "Bearer")
    with pytest.raises(PermissionDenied) as caught:
        authorize(_policy(("orch:read", "orch:quota")), _principal({"orch:read"}), "Bearer")
    error = caught.value
    assert error.reason == "insufficient_scope"
    assert error.message == "the access token lacks the scope orch:quota"
    assert error.metadata == {"scope": "orch:read orch:quota"}
    assert error.challenge == (
        'Bearer realm="orchestrator", error="insufficient_scope", '
        'error_description="the access token lacks a required scope", '
        'scope="orch:read orch:quota"'
    )


def test_a_dpop_caller_is_challenged_with_dpop() -> None:
    with pytest.raises(PermissionDenied) as caught:
        authorize(_policy(("orch:admin",)), _principal(set()), "DPoP")
    assert caught.value.challenge is not None
    assert caught.value.challenge.startswith(
        'DPoP realm="orchestrator", error="insufficient_scope"'
    )


def test_permissions_come_from_the_role_not_the_scopes() -> None:
    policy = _policy(permissions=("access orchestra api",))
    authorize(policy, _principal(set(), frozenset({"access orchestra api"})), "Bearer")
    with pytest.raises(PermissionDenied) as caught:
        authorize(policy, _principal({"access orchestra api"}), "Bearer")  # a scope is not a role
    assert caught.value.reason == "PERMISSION_REQUIRED"
    assert caught.value.metadata == {"permission": "access orchestra api"}
    assert caught.value.challenge is None
