"""The services this server calls (issue 13 point 5): one `UpstreamClient` each.

| name         | setting              | called by                                       |
|--------------|----------------------|-------------------------------------------------|
| docstore     | DOC_STORE_URL        | POST /docstore/save                             |
| reporting    | REPORTING_URL        | POST /report/request, POST /demo/e2e            |
| analyzer     | SECURE_ANALYZER_URL  | POST /summarization/suggest                     |
| notification | NOTIFICATION_URL     | the notify.consolidation delivery loop          |

Timeouts, retries, breaker thresholds and the body cap are the UPSTREAM_* settings
(server/config.py), the same for every upstream; each has its own breaker.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from purgatory import AsyncCircuitBreakerFactory

from server.config import Settings
from server.upstreams.client import UpstreamClient, UpstreamConfig

__all__ = ["UpstreamClient", "UpstreamConfig", "Upstreams"]


@dataclass(frozen=True, slots=True)
class Upstreams:
    docstore: UpstreamClient
    reporting: UpstreamClient
    analyzer: UpstreamClient
    notification: UpstreamClient

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Upstreams:
        breakers = AsyncCircuitBreakerFactory(
            default_threshold=settings.upstream_breaker_failures,
            default_ttl=settings.upstream_breaker_reset_seconds,
        )

        def client(name: str, setting: str, url: str | None) -> UpstreamClient:
            config = UpstreamConfig(
                name=name,
                setting=setting,
                url=url or None,
                connect_timeout_s=settings.upstream_connect_timeout_seconds,
                read_timeout_s=settings.upstream_read_timeout_seconds,
                retries=settings.upstream_retries,
                max_bytes=settings.upstream_max_body_bytes,
                breaker_failures=settings.upstream_breaker_failures,
                breaker_reset_s=settings.upstream_breaker_reset_seconds,
            )
            return UpstreamClient(config, breakers, transport=transport)

        return cls(
            docstore=client("docstore", "DOC_STORE_URL", settings.doc_store_url),
            reporting=client("reporting", "REPORTING_URL", settings.reporting_url),
            analyzer=client("analyzer", "SECURE_ANALYZER_URL", settings.secure_analyzer_url),
            notification=client("notification", "NOTIFICATION_URL", settings.notification_url),
        )

    async def close(self) -> None:
        for upstream in (self.docstore, self.reporting, self.analyzer, self.notification):
            await upstream.close()
