"""The resource server: every call's access token, scopes and permissions, in one place.

gRPC callers send `authorization` (and `dpop`) metadata; REST callers send the same
headers, which the gateway forwards. Whether a method needs a token, and which
scopes and role permissions, is its proto policy (`server/policy.py`); methods the
proto declares `AUTHENTICATION_NONE` (the OAuth endpoints, discovery) pass untouched.
Infrastructure services we do not own (gRPC health and reflection) carry no policy of
ours and are public by convention; any other method without a policy is refused, so
a new service cannot go out unprotected by omission.

DPoP proofs (RFC 9449) name the HTTP method and URL they were made for. A call
from the in-process gateway (or, with `trust_forwarded_headers`, from a proxy-mode
gateway) carries the HTTP request as `x-forwarded-method` / `x-forwarded-uri`; any
other gRPC call was a `POST` to `{public URL}/{package.Service}/{Method}`. An
in-process call is known by its servicer context's explicit flag (`is_in_process`),
never by a peer string or header a network caller could send.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from server.domain.context import CallContext
from server.domain.errors import PermissionDenied
from server.identity.challenges import resource_challenge
from server.identity.resource_server.principal import Principal, TokenRejected
from server.identity.resource_server.verifier import TokenVerifier
from server.identity.urls import PublicUrls
from server.interceptors.base import invocation_value, invocation_values, is_in_process
from server.interceptors.chain import Admission, Admit
from server.policy import MethodPolicy

PUBLIC_INFRASTRUCTURE = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Authentication(Admission):
    """Verifies the access token of methods whose policy needs one and checks its scopes
    and permissions; the call context gains the caller. Raises Unauthenticated (with
    the RFC 6750 / RFC 9449 challenge) or PermissionDenied."""

    def __init__(
        self, policies: Mapping[str, MethodPolicy], verifier: TokenVerifier, urls: PublicUrls
    ) -> None:
        self._policies = policies
        self._verifier = verifier
        self._urls = urls

    def admission(self, method: str) -> Admit | None:
        policy = self._policies.get(method)
        if policy is None:
            if method.startswith(PUBLIC_INFRASTRUCTURE):
                return None

            async def refuse(context: grpc.aio.ServicerContext, call: CallContext) -> CallContext:
                raise PermissionDenied(f"{method} declares no policy", reason="NO_POLICY")

            return refuse
        if not policy.authenticated:
            return None
        secured = policy

        async def authenticate(context: grpc.aio.ServicerContext, call: CallContext) -> CallContext:
            principal, scheme = await self._authenticate(method, context)
            authorize(secured, principal, scheme)
            return call.with_(
                actor=principal.client_id,
                token_id=principal.jti,
                scopes=principal.scopes,
                control=principal.claims,
                authenticated=True,
                bound_tenant=principal.tenant,
                operator_tenants=principal.tenants,
            )

        return authenticate

    async def _authenticate(
        self, method: str, context: grpc.aio.ServicerContext
    ) -> tuple[Principal, str]:
        authorizations = invocation_values(context, "authorization")
        proofs = invocation_values(context, "dpop")
        try:
            if len(authorizations) > 1:
                raise TokenRejected("invalid_request", "send one Authorization header")
            if len(proofs) > 1:
                raise TokenRejected(
                    "invalid_dpop_proof", "send exactly one DPoP header", scheme="DPoP"
                )
            authorization = authorizations[0] if authorizations else None
            # Only a DPoP proof names the request; a Bearer call skips working it out.
            dpop = authorization is not None and authorization.lstrip()[:5].lower() == "dpop "
            http_method, http_url = self._request_target(method, context) if dpop else ("", "")
            principal = await self._verifier.verify(
                authorization,
                proofs[0] if proofs else None,
                http_method=http_method,
                http_url=http_url,
            )
        except TokenRejected as rejected:
            raise rejected.to_domain_error() from None
        return principal, "DPoP" if principal.dpop_bound else "Bearer"

    def _request_target(self, method: str, context: grpc.aio.ServicerContext) -> tuple[str, str]:
        """The HTTP method and URL this call was sent to, as a DPoP proof must name them."""
        if is_in_process(context) or self._urls.trust_forwarded:
            http_method = invocation_value(context, "x-forwarded-method")
            uri = invocation_value(context, "x-forwarded-uri")
            if http_method and uri and uri.startswith("/"):
                return http_method.upper(), self._urls.request_url(
                    uri,
                    forwarded_proto=invocation_value(context, "x-forwarded-proto"),
                    forwarded_host=invocation_value(context, "x-forwarded-host"),
                )
        return "POST", self._urls.endpoint(method)


def authorize(policy: MethodPolicy, principal: Principal, scheme: str) -> None:
    """Scopes the token must carry and permissions the client's role must hold."""
    missing = [scope for scope in policy.scopes if scope not in principal.scopes]
    if missing:
        needed = " ".join(policy.scopes)
        raise PermissionDenied(
            f"the access token lacks the scope {', '.join(missing)}",
            reason="insufficient_scope",
            metadata={"scope": needed},
            challenge=resource_challenge(
                scheme,
                error="insufficient_scope",
                description="the access token lacks a required scope",
                scope=needed,
                algs=False,
            ),
        )
    if not principal.has_permissions(*policy.permissions):
        lacking = [p for p in policy.permissions if p not in principal.permissions]
        raise PermissionDenied(
            f"the client's role lacks the permission {', '.join(repr(p) for p in lacking)}",
            reason="PERMISSION_REQUIRED",
            metadata={"permission": ", ".join(lacking)},
        )
