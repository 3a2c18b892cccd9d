"""The dependencies /health/system checks, as `server.domain.health.Dependency` probes.

- the database: one `SELECT 1`;
- Redis, when REDIS_HOST is set: PING on a connection of its own;
- each peer of ORCHESTRATOR_PEERS and each configured service URL (REPORTING_URL,
  DOC_STORE_URL, SECURE_ANALYZER_URL, NOTIFICATION_URL, LOG_COLLECTOR_URL):
  `GET {url}/health`, up on any 2xx (every service of the mesh serves /health,
  seed 002). A peer's credentials
  (`client_id:client_secret@`) are for its token endpoint: they are taken off the URL
  before the request and never shown.

Each probe only does its round trip; the timeout and the concurrency are
`check_dependencies`'s.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from server.config import Settings
from server.domain.health import Dependency, DependencyDown
from server.observability.redaction import redact_text
from server.storage.db import Database
from server.storage.schema_state import ping

# Settings of the mesh's service URLs, in the order they are reported.
SERVICE_URLS: Final = (
    ("REPORTING_URL", "reporting_url"),
    ("DOC_STORE_URL", "doc_store_url"),
    ("SECURE_ANALYZER_URL", "secure_analyzer_url"),
    ("NOTIFICATION_URL", "notification_url"),
    ("LOG_COLLECTOR_URL", "log_collector_url"),
)


def without_userinfo(url: str) -> str:
    """`url` without `user:password@` (the peer's client credentials)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def peer_urls(settings: Settings) -> list[str]:
    """ORCHESTRATOR_PEERS as a list of URLs (comma-separated), blanks dropped; [] when
    the setting is absent or empty. Read from `peer_urls_secret` (a SecretStr: the URLs
    may carry credentials) or, in builds without it, `peers`."""
    value: object = getattr(settings, "peer_urls_secret", None) or getattr(settings, "peers", None)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]  # type: ignore[attr-defined]
    return [item.strip() for item in items if item.strip()]


def health_url(base: str) -> str:
    return without_userinfo(base).rstrip("/") + "/health"


class Probes:
    """Builds the dependency list from the settings; owns the HTTP client the URL
    probes share (close it with `aclose`)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        timeout = settings.health_check_timeout_seconds
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)

    def dependencies(self) -> list[Dependency]:
        settings = self._settings
        found = [
            Dependency(
                "database",
                "database",
                redact_text(self._db.url.render_as_string(hide_password=False))[0],
                lambda: ping(self._db),
            )
        ]
        if settings.redis_host:
            host, port = settings.redis_host, settings.redis_port
            found.append(Dependency("redis", "redis", f"{host}:{port}", self._redis_probe()))
        for index, url in enumerate(peer_urls(settings)):
            found.append(self._http_dependency(f"peer[{index}]", "peer", url))
        for variable, field_name in SERVICE_URLS:
            configured: object = getattr(settings, field_name, None)
            if configured:
                found.append(self._http_dependency(variable, "service", str(configured)))
        return found

    def _http_dependency(self, name: str, kind: str, url: str) -> Dependency:
        target = health_url(url)

        async def probe() -> None:
            response = await self._http.get(target)
            if not response.is_success:
                raise DependencyDown(f"HTTP {response.status_code}")

        return Dependency(name, kind, redact_text(target)[0], probe)

    def _redis_probe(self) -> _RedisPing:
        return _RedisPing(self._settings)

    async def aclose(self) -> None:
        await self._http.aclose()


class _RedisPing:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self) -> None:
        timeout = self._settings.health_check_timeout_seconds
        client = Redis(
            host=self._settings.redis_host or "",
            port=self._settings.redis_port,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # one attempt: a health check reports, never retries
        )
        try:
            if not await client.ping():
                raise DependencyDown("PING was not answered PONG")
        finally:
            await client.aclose()
