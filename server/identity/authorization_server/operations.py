"""The authorization server's operations: token (RFC 6749 §4.4), introspection
(RFC 7662) and revocation (RFC 7009), as async calls on plain values.

Each call finds the client id (HTTP Basic or the `client_id` form field, never
both methods at once, RFC 6749 §2.3), refuses it while the failure throttle has
it locked, loads what authlib will need from the database, then runs authlib's
flow (`oauth2.py` beside this module) in a worker thread. authlib's RFC 6749 §5.2
errors become domain errors whose ErrorInfo reason is the RFC error code:
`invalid_client` is Unauthenticated with a `Basic` challenge (RFC 9110 demands a
WWW-Authenticate on every 401), everything else InvalidArgument.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from authlib.oauth2.rfc6749 import OAuth2Error  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.util import (  # type: ignore[import-untyped]
    extract_basic_authorization,
)

from gateway.text import error_description, has_control
from server.domain.errors import DomainError, InvalidArgument, Unauthenticated
from server.identity.authorization_server import clients
from server.identity.authorization_server.introspection_revocation import endpoint_server
from server.identity.authorization_server.keys import KeyRing
from server.identity.authorization_server.oauth2 import (
    InvalidDpopProofError,
    OAuthClient,
    OAuthRequest,
    token_server,
)
from server.identity.authorization_server.throttle import FailureThrottle
from server.identity.challenges import BASIC_CHALLENGE
from server.identity.dpop import DpopError, DpopProof, DpopVerifier
from server.identity.resource_server.verifier import TokenVerifier
from server.identity.revocation import RevocationList, revoke_token
from server.identity.urls import INTROSPECTION_PATH, REVOCATION_PATH, TOKEN_PATH, PublicUrls
from server.storage.db import Database

CLIENT_ID_MAX = 128
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class OAuthCall:
    """One request as the transport saw it: form fields by RFC name (empty ones
    left out), the Authorization value, DPoP proofs, and forwarded URL hints."""

    form: Mapping[str, str]
    authorization: str | None = None
    dpop_proofs: tuple[str, ...] = ()
    forwarded_proto: str | None = None
    forwarded_host: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    token_type: str  # "Bearer" or "DPoP"
    expires_in: int
    scope: str | None  # None when no scope was granted


class AuthorizationServer:
    def __init__(
        self,
        *,
        db: Database,
        keys: KeyRing,
        verifier: TokenVerifier,
        revocations: RevocationList,
        dpop: DpopVerifier,
        urls: PublicUrls,
        throttle: FailureThrottle,
    ) -> None:
        self._db = db
        self._keys = keys
        self._verifier = verifier
        self._revocations = revocations
        self._dpop = dpop
        self._urls = urls
        self._throttle = throttle

    async def token(self, call: OAuthCall) -> IssuedToken:
        """Issue an access token (client credentials grant)."""
        if not call.form.get("grant_type"):
            raise InvalidArgument.of("grant_type", "is required", reason="invalid_request")
        url = self._url(TOKEN_PATH, call)
        client = await self._client(call)
        key = await self._keys.signing_key()

        def issue() -> tuple[dict[str, Any], DpopProof | None]:
            request = self._request(url, call)
            server = token_server(
                client=client,
                dpop=self._dpop,
                issuer=self._urls.issuer,
                audience=self._urls.audience,
                key=key,
                request=request,
            )
            _status, body, _headers = server.create_token_response(request)
            return dict(body), request.dpop_proof

        body, proof = await self._run(client, issue)
        if proof is not None:  # RFC 9449 §11.1, last of the checks: the token is not handed out
            try:
                await self._dpop.first_use(proof)
            except DpopError as exc:
                raise domain_error(InvalidDpopProofError(str(exc))) from exc
        return IssuedToken(
            access_token=body["access_token"],
            token_type=body["token_type"],
            expires_in=int(body["expires_in"]),
            scope=body.get("scope") or None,
        )

    async def introspect(self, call: OAuthCall) -> dict[str, Any]:
        """RFC 7662 §2.2 members: `{"active": False}` alone, or the active token's."""
        token = _required_token(call)
        url = self._url(INTROSPECTION_PATH, call)
        await self._verifier.prepare(token)
        client = await self._client(call)

        def introspect() -> dict[str, Any]:
            request = self._request(url, call)
            server = endpoint_server(client=client, dpop=self._dpop, verifier=self._verifier)
            _status, body, _headers = server.create_endpoint_response("introspection", request)
            return dict(body)

        return await self._run(client, introspect)

    async def revoke(self, call: OAuthCall) -> None:
        """Revoke the caller's token; unknown, forged and expired tokens are a no-op."""
        token = _required_token(call)
        url = self._url(REVOCATION_PATH, call)
        await self._verifier.prepare(token)
        client = await self._client(call)

        def revoke() -> OAuthRequest:
            request = self._request(url, call)
            server = endpoint_server(client=client, dpop=self._dpop, verifier=self._verifier)
            server.create_endpoint_response("revocation", request)
            return request

        request = await self._run(client, revoke)
        if request.revoked is not None:
            claims = request.revoked
            jti = str(claims["jti"])
            # Kept while the token would verify (exp + leeway), or it would verify again.
            expires_at = math.ceil(self._verifier.valid_until(claims))
            await revoke_token(
                self._db, jti=jti, client_id=str(claims["client_id"]), expires_at=expires_at
            )
            self._revocations.add(jti)

    def _url(self, path: str, call: OAuthCall) -> str:
        return self._urls.request_url(
            path, forwarded_proto=call.forwarded_proto, forwarded_host=call.forwarded_host
        )

    @staticmethod
    def _request(url: str, call: OAuthCall) -> OAuthRequest:
        return OAuthRequest(
            uri=url, form=call.form, authorization=call.authorization, dpop_proofs=call.dpop_proofs
        )

    async def _client(self, call: OAuthCall) -> OAuthClient:
        """The client the request claims to be, loaded; refused early while locked out."""
        basic_id, _ = extract_basic_authorization({"Authorization": call.authorization or ""})
        form_id = call.form.get("client_id")
        if basic_id is not None and call.form.get("client_secret"):
            raise InvalidArgument.of(
                "client_secret",
                "use one client authentication method, HTTP Basic or form fields, not both",
                reason="invalid_request",
            )
        if basic_id is not None and form_id is not None and basic_id != form_id:
            raise InvalidArgument.of(
                "client_id", "differs from the HTTP Basic user name", reason="invalid_request"
            )
        client_id = basic_id or form_id
        if not client_id or len(client_id) > CLIENT_ID_MAX:
            raise _invalid_client("client authentication is required")
        if has_control(client_id):  # no client has one (RFC 6749 §A.1: VSCHAR), and
            # PostgreSQL refuses a NUL in text: not looked up, nor counted as a failure
            raise _invalid_client("client authentication failed")
        wait = await self._throttle.retry_after(client_id)
        if wait is not None:
            raise _invalid_client(f"too many failed authentications; retry in {math.ceil(wait)} s")
        credentials = await clients.find_credentials(self._db, client_id=client_id)
        return OAuthClient(client_id, credentials)

    async def _run(self, client: OAuthClient, flow: Callable[[], _T]) -> _T:
        try:
            result = await asyncio.to_thread(flow)
        except OAuth2Error as error:
            if error.error == "invalid_client":
                await self._throttle.failed(client.client_id)
            elif client.authenticated:
                await self._throttle.succeeded(client.client_id)
            raise domain_error(error) from None
        if client.authenticated:
            await self._throttle.succeeded(client.client_id)
        return result


def _required_token(call: OAuthCall) -> str:
    token = call.form.get("token")
    if not token:
        raise InvalidArgument.of("token", "is required", reason="invalid_request")
    return token


def _invalid_client(description: str) -> Unauthenticated:
    return Unauthenticated(description, reason="invalid_client", challenge=BASIC_CHALLENGE)


def domain_error(error: OAuth2Error) -> DomainError:
    """An authlib RFC 6749 §5.2 error as the domain error server/errors.py maps."""
    code = str(error.error)
    if code == "invalid_client":
        return _invalid_client("client authentication failed")
    if code == "insecure_transport":
        return InvalidArgument(
            "OAuth 2.0 needs https (RFC 6749 section 1.6): set ORCHESTRATOR_PUBLIC_URL "
            "to the https URL clients use",
            reason="invalid_request",
        )
    description = error_description(str(error.get_error_description() or code))
    field = getattr(error, "field", None)
    if isinstance(field, str):
        return InvalidArgument.of(field, description, reason=code)
    return InvalidArgument(description, reason=code)
