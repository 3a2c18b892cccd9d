"""authlib, adapted to our transport-free requests.

authlib does the protocol work: client authentication (`client_secret_basic`,
`client_secret_post`, RFC 6749 §2.3), grant selection and the client credentials
grant (§4.4), scope validation (§3.3), the RFC 9068 JWT access token and the
token response (§5.1), and the RFC 6749 §5.2 error objects (the RFC 7662 and
RFC 7009 endpoints are in `introspection_revocation.py`). This module supplies what
authlib leaves to the framework: the request (`OAuthRequest`, built from the form
fields and the `authorization` metadata), the client model (`OAuthClient`), the
signing key and our claims, and two extensions of the grant: the seed-003
reason/ticket rule and DPoP key binding (RFC 9449 §5).

authlib is synchronous; a `RequestServer` is built per request and run in a
worker thread (scrypt must not block the event loop), with everything it needs
from the database loaded beforehand. Errors are re-raised, not rendered:
`operations.py` maps them to domain errors.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    AuthorizationServer,
    ClientCredentialsGrant,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # type: ignore[import-untyped]
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator  # type: ignore[import-untyped]
from joserfc.jwk import ECKey, KeySet

from gateway.text import error_description, has_control
from server.identity.authorization_server import passwords
from server.identity.authorization_server.clients import ClientCredentials
from server.identity.authorization_server.keys import ALGORITHM
from server.identity.dpop import DpopError, DpopProof, DpopVerifier
from server.identity.scopes import (
    ADMIN,
    JUSTIFIED,
    JUSTIFIED_SCOPES,
    REASON_MAX,
    SCOPES,
    TICKET_MAX,
    canonical,
)

# authlib logs issued tokens at DEBUG ("Issue token %r to %r"): never let a debug
# log level turn access tokens into log lines.
logging.getLogger("authlib").setLevel(logging.INFO)

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
GRANT_TYPE = "client_credentials"
TOKEN_LIFETIME = 3600


class FieldError(InvalidRequestError):  # type: ignore[misc]
    """invalid_request naming the offending parameter (it becomes a BadRequest violation)."""

    def __init__(self, field: str, description: str, *, error: str = "invalid_request") -> None:
        super().__init__(description=description)
        self.field = field
        self.error = error


class InvalidDpopProofError(OAuth2Error):  # type: ignore[misc]
    error = "invalid_dpop_proof"  # RFC 9449 §5


@functools.cache
def _decoy_hash() -> str:
    """Verified against for unknown clients, so their timing matches known ones."""
    return passwords.hash_secret(secrets.token_urlsafe(32))


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """One token, introspection or revocation request, plus what validating it found."""

    def __init__(
        self,
        *,
        uri: str,
        form: Mapping[str, str],
        authorization: str | None,
        dpop_proofs: tuple[str, ...] = (),
    ) -> None:
        super().__init__("POST", uri, headers={"Authorization": authorization or ""})
        self._form = dict(form)
        self.payload = BasicOAuth2Payload(self._form)
        self.dpop_proofs = dpop_proofs
        self.confirmation: str | None = None  # DPoP key thumbprint to bind (cnf.jkt)
        self.dpop_proof: DpopProof | None = None  # checked but not yet used (jti unrecorded)
        self.controls: dict[str, str] = {}  # seed-003 reason/ticket claims
        self.revoked: dict[str, Any] | None = None  # claims of the token to revoke

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class OAuthClient:
    """authlib's ClientMixin over a stored client; an unknown id gets a decoy."""

    def __init__(self, client_id: str, credentials: ClientCredentials | None) -> None:
        self.client_id = client_id
        self.credentials = credentials
        self.authenticated = False

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.credentials.secret_hash if self.credentials else _decoy_hash()
        matches = passwords.verify_secret(client_secret, stored)
        self.authenticated = (
            matches and self.credentials is not None and not self.credentials.client.disabled
        )
        return self.authenticated

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.credentials.client.scopes if self.credentials else ()

    @property
    def require_dpop(self) -> bool:
        return self.credentials is not None and self.credentials.client.require_dpop

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes, all of which the client must hold; when none are
        requested, the client's scopes that need no reason (RFC 6749 §3.3 default)."""
        if not scope:
            return " ".join(s for s in self.scopes if s not in JUSTIFIED_SCOPES)
        requested = set(scope.split())
        refused = [s for s in canonical(requested) if s not in self.scopes]
        if refused:
            raise InvalidScopeError(f"scope not granted to this client: {' '.join(refused)}")
        return " ".join(canonical(requested))

    def identity_claims(self) -> dict[str, Any]:
        assert self.credentials is not None  # only authenticated clients get tokens
        client = self.credentials.client
        claims: dict[str, Any] = {"permissions": list(client.permissions)}
        if client.tenant is not None:
            claims["tenant"] = client.tenant
        else:
            claims["tenants"] = list(client.tenants)
        return claims


def justification(granted: set[str], form: Mapping[str, str]) -> dict[str, str]:
    """Seed 003: reasons (and tickets) for orch:quota and orch:backfill become claims."""
    claims: dict[str, str] = {}
    for item in JUSTIFIED:
        if item.scope not in granted:
            continue
        reason = form.get(item.reason_field, "").strip()
        ticket = form.get(item.ticket_field, "").strip()
        if not reason:
            raise FieldError(item.reason_field, f"is required when requesting {item.scope}")
        for field, value, limit in (
            (item.reason_field, reason, REASON_MAX),
            (item.ticket_field, ticket, TICKET_MAX),
        ):
            if len(value) > limit:
                raise FieldError(field, f"must be at most {limit} characters")
            if has_control(value):
                raise FieldError(field, "must not contain control characters")
        claims[item.reason_field] = reason
        if ticket:
            claims[item.ticket_field] = ticket
    return claims


class JustifiedClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """authlib's grant, plus the seed-003 justification and DPoP binding."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()  # authenticates; checks grant and scope
        request: OAuthRequest = self.request
        granted = set(request.client.get_allowed_scope(request.payload.scope).split())
        request.controls = justification(granted, request.form)
        request.confirmation = self.server.confirm_dpop(request)


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """authlib's RFC 9068 generator with our key, audience and claims, for one request."""

    def __init__(self, *, issuer: str, audience: str, key: ECKey, request: OAuthRequest) -> None:
        super().__init__(issuer, alg=ALGORITHM, expires_generator=TOKEN_LIFETIME)
        self._audience = audience
        self._key = key
        self._request = request

    def get_jwks(self) -> KeySet:
        return KeySet([self._key])  # one key: joserfc puts its kid in the header

    def get_audiences(self, client: OAuthClient, user: Any, scope: str) -> str:
        return self._audience

    def get_extra_claims(
        self, client: OAuthClient, grant_type: str, user: Any, scope: str
    ) -> dict[str, Any]:
        claims = client.identity_claims()
        claims.update(self._request.controls)
        if self._request.confirmation is not None:
            claims["cnf"] = {"jkt": self._request.confirmation}
        return claims

    def generate(
        self,
        grant_type: str,
        client: OAuthClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = super().generate(
            grant_type, client, user, scope, expires_in, include_refresh_token
        )
        if self._request.confirmation is not None:
            token["token_type"] = "DPoP"  # RFC 9449 §5
        return token


class RequestServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's server for one request: knows one client, renders nothing."""

    def __init__(self, *, client: OAuthClient, dpop: DpopVerifier) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self._client = client
        self._dpop = dpop

    def query_client(self, client_id: str) -> OAuthClient:
        if client_id == self._client.client_id:
            return self._client
        return OAuthClient(client_id, None)

    def save_token(self, token: dict[str, Any], request: OAuthRequest) -> None:
        return None  # JWTs are self-contained; nothing to store

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers

    def handle_error_response(self, request: OAuthRequest, error: OAuth2Error) -> None:
        raise error

    def validate_requested_scope(self, scope: str | None) -> None:
        unknown = [s for s in (scope or "").split() if s not in SCOPES]
        if unknown:
            raise InvalidScopeError(error_description(f"unknown scope: {' '.join(unknown)}"))

    def confirm_dpop(self, request: OAuthRequest) -> str | None:
        """The thumbprint to bind, from the request's DPoP proof (RFC 9449 §5)."""
        if not request.dpop_proofs:
            if self._client.require_dpop:
                raise FieldError("DPoP", "a DPoP proof is required for this client")
            return None
        if len(request.dpop_proofs) > 1:
            raise InvalidDpopProofError("send exactly one DPoP header")
        try:
            proof = self._dpop.verify(
                request.dpop_proofs[0], http_method="POST", http_url=request.uri
            )
        except DpopError as exc:
            raise InvalidDpopProofError(error_description(str(exc))) from exc
        request.dpop_proof = proof  # its jti is recorded after the flow: an awaited round trip
        return proof.jkt


def token_server(
    *,
    client: OAuthClient,
    dpop: DpopVerifier,
    issuer: str,
    audience: str,
    key: ECKey,
    request: OAuthRequest,
) -> RequestServer:
    server = RequestServer(client=client, dpop=dpop)
    server.register_grant(JustifiedClientCredentialsGrant)
    generator = AccessTokenGenerator(issuer=issuer, audience=audience, key=key, request=request)
    server.register_token_generator("default", generator)
    return server
