"""Introspection (RFC 7662) and revocation (RFC 7009): authlib's endpoints over our tokens.

authlib authenticates the calling client, checks the parameters, decides whether
the caller may see or revoke the token and shapes the answer (`{"active": false}`
for anything inactive, `{}` after revocation). We supply the token lookup: our
verifier's signature and claim checks, from memory, plus the revocation list. A
client may introspect and revoke its own tokens; a client holding `orch:admin`
may do so for any token.

`token_type_hint` is advisory (RFC 7009 §2.1, RFC 7662 §2.1): the server "MAY ignore
this parameter" and, when the token is not of the hinted type, "MUST extend its
search across all of its supported token types". authlib refuses hints outside its
list with `unsupported_token_type`; we check only that `token` is present and look
the token up whatever the hint says. `unsupported_token_type` (RFC 7009 §2.2.1) is
about the token presented, not the hint, and every token we can find we can revoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError  # type: ignore[import-untyped]
from authlib.oauth2.rfc7009 import RevocationEndpoint  # type: ignore[import-untyped]
from authlib.oauth2.rfc7662 import IntrospectionEndpoint  # type: ignore[import-untyped]

from server.identity.authorization_server.oauth2 import (
    AUTH_METHODS,
    OAuthClient,
    OAuthRequest,
    RequestServer,
)
from server.identity.dpop import DpopVerifier
from server.identity.resource_server.principal import TokenRejected
from server.identity.resource_server.verifier import TokenVerifier
from server.identity.scopes import JUSTIFIED


class AccessToken:
    """A decoded access token as authlib's introspection and revocation see it."""

    def __init__(self, claims: dict[str, Any], *, revoked: bool) -> None:
        self.claims = claims
        self.revoked = revoked

    def is_expired(self) -> bool:
        return False  # decoding refused expired tokens

    def is_revoked(self) -> bool:
        return self.revoked

    def check_client(self, client: OAuthClient) -> bool:
        return bool(self.claims["client_id"] == client.get_client_id() or client.is_admin)


class _TokenEndpointMixin:
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def __init__(self, verifier: TokenVerifier) -> None:
        super().__init__()
        self._verifier = verifier

    def check_params(self, request: OAuthRequest, client: OAuthClient) -> None:
        """`token` is required; `token_type_hint`, whatever its value, is not checked."""
        if "token" not in request.form:
            raise InvalidRequestError()

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | None:
        """Our access token behind `token_string`; the hint is not consulted (one kind)."""
        try:
            claims = self._verifier.decode(token_string)
        except TokenRejected:
            return None  # forged, expired or not ours: inactive / nothing to revoke
        return AccessToken(claims, revoked=self._verifier.is_revoked(claims))


class Introspection(_TokenEndpointMixin, IntrospectionEndpoint):  # type: ignore[misc]
    def check_permission(self, token: AccessToken, client: OAuthClient, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: AccessToken) -> dict[str, Any]:
        return introspection_payload(token.claims)


class Revocation(_TokenEndpointMixin, RevocationEndpoint):  # type: ignore[misc]
    def revoke_token(self, token: AccessToken, request: OAuthRequest) -> None:
        request.revoked = token.claims  # written to the database back on the event loop


def introspection_payload(claims: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7662 §2.2 members of an active token, with our claims."""
    payload = {"active": True, "token_type": "DPoP" if "cnf" in claims else "Bearer"}
    for name in ("scope", "client_id", "exp", "iat", "sub", "aud", "iss", "jti"):
        payload[name] = claims[name] if name != "scope" else claims.get("scope") or ""
    for name in ("tenant", "tenants", "permissions", "cnf"):
        if name in claims:
            payload[name] = claims[name]
    for item in JUSTIFIED:
        for name in (item.reason_field, item.ticket_field):
            if name in claims:
                payload[name] = claims[name]
    return payload


def endpoint_server(
    *, client: OAuthClient, dpop: DpopVerifier, verifier: TokenVerifier
) -> RequestServer:
    server = RequestServer(client=client, dpop=dpop)
    server.register_endpoint(Introspection(verifier))
    server.register_endpoint(Revocation(verifier))
    return server
