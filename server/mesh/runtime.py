"""The mesh pieces of one server process, built once at start-up (`server/app.py`).

`Mesh.start` reads this deployment's orchestrator id (created once in the database and
shared by every replica, so replicas of one deployment are one origin), works out
where this server is reached (for the loop checks), parses the peers and opens the
shared HTTP clients; `close` releases them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from server.config import Settings
from server.domain.hosts import canonical_host, is_loopback
from server.domain.registry import SelfAddresses, SyncLimits
from server.identity.urls import is_wildcard
from server.mesh.openapi_fetch import OpenApiFetcher
from server.mesh.peers import HttpPeerLink, PeerConfig, parse_peers
from server.storage.db import Database
from server.storage.repositories.registry import SqlRegistryStore
from server.storage.repositories.secrets import get_or_create_secret

ORIGIN_SECRET = "mesh_origin"  # server_secrets row holding the orchestrator id


def self_addresses(settings: Settings, http_port: int) -> SelfAddresses:
    """(host, port) pairs this server answers on: its public URL, its bound address and,
    when bound to loopback or every interface, the loopback names and host name."""
    pairs: set[tuple[str, int]] = set()
    public = urlsplit(settings.public_url) if settings.public_url else None
    if public is not None and public.hostname:
        port = public.port or (443 if public.scheme == "https" else 80)
        pairs.add((public.hostname.lower(), port))
    host = settings.host.strip("[]").lower()
    pairs.add((host, http_port))
    loopback_ports: set[int] = set()
    if is_wildcard(settings.host) or is_loopback(canonical_host(host)):
        loopback_ports.add(http_port)
    if is_wildcard(settings.host):
        pairs.add((socket.gethostname().lower(), http_port))
    return SelfAddresses(frozenset(pairs), frozenset(loopback_ports))


@dataclass
class Mesh:
    origin: str  # this deployment's orchestrator id
    store: SqlRegistryStore
    addresses: SelfAddresses
    peers: tuple[PeerConfig, ...]
    links: tuple[HttpPeerLink, ...]
    fetcher: OpenApiFetcher
    limits: SyncLimits
    fetch_concurrency: int
    _http: httpx.AsyncClient

    @classmethod
    async def start(cls, settings: Settings, db: Database, *, http_port: int) -> Mesh:
        origin = await get_or_create_secret(db, ORIGIN_SECRET, nbytes=8)
        addresses = self_addresses(settings, http_port)
        peers = tuple(parse_peers(settings.peer_urls_secret.get_secret_value()))
        timeout = settings.peer_timeout_seconds
        http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)
        return cls(
            origin=origin,
            store=SqlRegistryStore(db),
            addresses=addresses,
            peers=peers,
            links=tuple(HttpPeerLink(http, peer) for peer in peers),
            fetcher=OpenApiFetcher(
                timeout=settings.registry_fetch_timeout_seconds,
                max_bytes=settings.registry_openapi_max_bytes,
                addresses=addresses,
            ),
            limits=SyncLimits(timeout=timeout, concurrency=settings.peer_sync_concurrency),
            fetch_concurrency=settings.registry_fetch_concurrency,
            _http=http,
        )

    async def close(self) -> None:
        await self._http.aclose()
        await self.fetcher.close()
