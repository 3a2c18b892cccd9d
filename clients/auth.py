"""OAuth 2.0 client credentials for Python callers: one token, fetched when needed.

Remote sites and services authenticate with a client id and secret (RFC 6749 §4.4).
`ClientCredentials` asks the token endpoint once, reuses the token until shortly
before it expires, and serialises refreshes so a burst of calls costs one request.
It works with every transport: the token travels as the `Authorization` header
(REST) or metadata (gRPC, in-process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from clients.errors import ApiError

REFRESH_MARGIN_SECONDS = 30.0


@dataclass
class ClientCredentials:
    token_url: str  # e.g. "https://orchestrator.example/oauth/token"
    client_id: str
    client_secret: str
    scopes: Sequence[str] = ()
    # Seed-003 justification fields (quota_reason, backfill_ticket, ...), sent as form fields.
    extra: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    clock: Callable[[], float] = time.monotonic
    # How the client authenticates at the token endpoint (RFC 6749 §2.3.1): HTTP Basic,
    # or "client_secret_post" (client_id and client_secret in the form, as seed 004 has).
    client_authentication: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"
    )
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def authorization(self) -> str:
        """The `Authorization` value for the next call, refreshing the token if due."""
        async with self._lock:
            if self._token is None or self.clock() >= self._expires_at - REFRESH_MARGIN_SECONDS:
                await self._refresh()
            return f"Bearer {self._token}"

    def invalidate(self, authorization: str | None = None) -> None:
        """Forget the token (e.g. after the server refused it as revoked); with
        `authorization` (the value a refused call sent) only if it is still that one,
        so calls refused together cost one refresh."""
        if authorization is None or authorization == f"Bearer {self._token}":
            self._token = None

    async def _refresh(self) -> None:
        form = {"grant_type": "client_credentials", **self.extra}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        basic = self.client_authentication == "client_secret_basic"
        if not basic:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            if basic:
                response = await http.post(
                    self.token_url, data=form, auth=(self.client_id, self.client_secret)
                )
            else:
                response = await http.post(self.token_url, data=form)
        body = _json(response)
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if response.status_code != 200 or not isinstance(token, str):
            raise ApiError(
                code=str(body.get("error", "UNAUTHENTICATED")),
                message=str(body.get("error_description", response.text[:200])),
                http_status=response.status_code,
            )
        self._token = token
        self._expires_at = self.clock() + (lifetime if isinstance(lifetime, int) else 0)


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
