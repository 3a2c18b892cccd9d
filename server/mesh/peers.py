"""Peer orchestrators: the configured list, their tokens, and the link a sync talks over.

`ORCHESTRATOR_PEERS` (or `orchestrator.peers` in config/app.yaml, a string or a YAML
list) holds comma-separated base URLs. A URL may carry `client_id:client_secret@`,
each percent-encoded (RFC 3986 §3.2.1): the credentials of a client *that peer*
issued (`orchestrator clients create --tenants '' --scope orch:admin` on the peer),
with which this server gets a client-credentials token (RFC 6749 §4.4) from the
peer's `/oauth/token` and refreshes it before it expires.

Credentials never leave this module's objects: `PeerConfig.url` is the URL without
them (what GET /peers, results, logs and errors show), the secret is a pydantic
`SecretStr` (its repr is `**********`), and every message built here names the
credential-free URL only. `redact_peer_urls` is the list as /config/effective shows it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from google.protobuf import json_format
from pydantic import SecretStr

from orchestrator.mesh.v1 import registry_service_pb2 as pb
from server.domain.errors import InvalidArgument
from server.domain.hosts import canonical_host
from server.domain.registry import PeerFailure, Pushed, ServiceEntry
from server.mesh import wire

TOKEN_PATH = "/oauth/token"
SCOPE = "orch:admin"
PAGE_LIMIT = 200
PAGES_MAX = 10_000  # 2 million entries: a peer answering more pages is broken
BATCH = 500  # entries per ReplicateServices call (domain/registry.py REPLICATE_BATCH_MAX)
REFRESH_MARGIN_SECONDS = 30.0  # refresh this long before expiry (half the life when shorter)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One configured peer: `url` without credentials and trailing slash."""

    url: str
    client_id: str | None = None
    client_secret: SecretStr | None = field(default=None, repr=False)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _bad(position: int, problem: str) -> ValueError:
    return ValueError(f"peer {position}: {problem}")


def parse_peers(value: str | None) -> list[PeerConfig]:
    """The peers of an ORCHESTRATOR_PEERS value, in the order given. Raises ValueError
    naming the peer by position (never quoting credentials) for a URL that is not
    absolute http(s), has a query or fragment, has a user without a secret, or
    repeats another peer."""
    peers: list[PeerConfig] = []
    for position, raw in enumerate((value or "").split(","), start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise _bad(position, "is not a URL (bad host or port)") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise _bad(position, "must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise _bad(position, "must not have a query or fragment")
        if port == 0:
            raise _bad(position, "must not name port 0")
        client_id, secret = _userinfo(position, parts)
        # One spelling per address (domain/hosts.py) and no default port, so the same
        # peer written twice (`127.1` and `127.0.0.1`, `:80` and none) is a repeat.
        scheme = parts.scheme.lower()
        canonical = canonical_host(parts.hostname)
        host = canonical if ":" not in canonical else f"[{canonical}]"
        if port == _DEFAULT_PORTS[scheme]:
            port = None
        netloc = host + (f":{port}" if port is not None else "")
        url = urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))
        if any(peer.url == url for peer in peers):
            raise _bad(position, f"repeats {url}")
        peers.append(PeerConfig(url, client_id, secret))
    return peers


def _userinfo(position: int, parts: Any) -> tuple[str | None, SecretStr | None]:
    if "@" not in parts.netloc:
        return None, None
    if parts.password is None or not parts.username:
        raise _bad(position, "credentials must be client_id:client_secret@")
    return unquote(parts.username), SecretStr(unquote(parts.password))


def redact_peer_urls(value: str | None) -> str:
    """The configured peers without credentials, comma-separated; a value that does not
    parse is shown as "**redacted**" whole (it may hold credentials)."""
    try:
        return ",".join(peer.url for peer in parse_peers(value))
    except ValueError:
        return "**redacted**" if value else ""


class PeerTokens:
    """A client-credentials token from one peer, fetched when first needed and again
    shortly before it expires; concurrent callers share one refresh."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        peer: PeerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._peer = peer
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def authorization(self) -> str:
        """`Bearer <token>`. Raises PeerFailure ("unauthorized", "unreachable", ...)."""
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                await self._refresh()
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = None

    async def _refresh(self) -> None:
        peer = self._peer
        if peer.client_id is None or peer.client_secret is None:
            raise PeerFailure(
                "unauthorized",
                f"no client credentials are configured for {peer.url} "
                "(ORCHESTRATOR_PEERS: http://client_id:client_secret@host:port)",
            )
        url = peer.url + TOKEN_PATH
        form = {"grant_type": "client_credentials", "scope": SCOPE}
        auth = (peer.client_id, peer.client_secret.get_secret_value())
        response = await _send(self._http, "POST", url, data=form, auth=auth)
        body = _json_object(response)
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if response.status_code != 200 or not isinstance(token, str):
            error = body.get("error") or f"HTTP {response.status_code}"
            status = "unauthorized" if response.status_code in (400, 401, 403) else "failed"
            raise PeerFailure(
                status, f"POST {url} refused this server's client credentials: {error}"
            )
        life = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 60.0
        self._token = token
        self._refresh_at = self._clock() + life - min(REFRESH_MARGIN_SECONDS, life / 2)


async def _send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; transport failures become PeerFailure naming `url` (never credentials)."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise PeerFailure("timeout", f"{method} {url} timed out") from None
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
        raise PeerFailure("unreachable", f"{method} {url} failed: {reason}") from None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class HttpPeerLink:
    """`PeerLink` over a peer's REST API: GET /registry (every page) and POST
    /registry/replicate (batches), with the peer's token."""

    def __init__(self, http: httpx.AsyncClient, peer: PeerConfig) -> None:
        self._http = http
        self._peer = peer
        self.tokens = PeerTokens(http, peer)

    @property
    def url(self) -> str:
        return self._peer.url

    async def _call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        url = self._peer.url + path
        for attempt in (1, 2):
            sent = {**(headers or {}), "Authorization": await self.tokens.authorization()}
            response = await _send(self._http, method, url, headers=sent, **kwargs)
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()  # revoked or expired early: one fresh token
                continue
            break
        body = _json_object(response)
        if response.status_code >= 400:
            status = "unauthorized" if response.status_code in (401, 403) else "failed"
            detail = body.get("error") or response.reason_phrase
            raise PeerFailure(
                status, f"{method} {url.split('?')[0]} answered {response.status_code}: {detail}"
            )
        return body

    async def pull(self) -> Sequence[ServiceEntry]:
        entries: list[ServiceEntry] = []
        params: dict[str, str | int] = {"limit": PAGE_LIMIT}
        for _ in range(PAGES_MAX):
            body = await self._call("GET", "/registry", params=params)
            page = self._parse(body, pb.ListServicesResponse())
            try:
                entries += [wire.entry_of(m, f"items[{i}]") for i, m in enumerate(page.items)]
            except InvalidArgument as exc:
                raise PeerFailure("failed", f"GET {self.url}/registry answered {exc}") from None
            if not page.continuation_token:
                return entries
            params["continuationToken"] = page.continuation_token
        raise PeerFailure("failed", f"GET {self.url}/registry never ended")

    async def push(
        self, origin: str, entries: Sequence[ServiceEntry], *, reason: str, trace_id: str
    ) -> Pushed:
        if not entries:  # nothing to send: the peer's version and origin from GET /peers
            found = self._parse(await self._call("GET", "/peers"), pb.ListPeersResponse())
            return Pushed(0, found.registry_version, found.origin)
        headers = {"X-Stella-Operator-Reason": reason, "X-Stella-Trace-Id": trace_id}
        accepted, answer = 0, pb.ReplicateServicesResponse()
        for start in range(0, len(entries), BATCH):
            request = pb.ReplicateServicesRequest(
                origin=origin,
                services=[wire.message_of(e) for e in entries[start : start + BATCH]],
            )
            body = json_format.MessageToDict(request)
            answer = self._parse(
                await self._call("POST", "/registry/replicate", headers, json=body),
                pb.ReplicateServicesResponse(),
            )
            accepted += answer.accepted
        return Pushed(accepted, answer.registry_version, answer.origin)

    def _parse(self, body: dict[str, Any], message: Any) -> Any:
        try:
            return json_format.ParseDict(body, message, ignore_unknown_fields=True)
        except json_format.ParseError:
            raise PeerFailure(
                "failed", f"{self.url} answered a body that is not the registry API's"
            ) from None
