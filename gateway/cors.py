"""CORS, configured by origins; Starlette's middleware does the protocol work
(preflight answers, Vary, credentials), so this only fixes our defaults: the
headers browsers may send (auth, tenancy, audit, tracing, conditional requests) and
the ones they may read (trace id, ETag, deprecation links)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "DPoP",
    "Idempotency-Key",
    "If-None-Match",
    "traceparent",
    "X-Stella-Tenant",
    "X-StellaOps-Tenant",
    "X-Stella-Project",
    "X-Stella-Trace-Id",
    "X-Stella-Operator-Reason",
    "X-Stella-Operator-Ticket",
)
EXPOSE_HEADERS = (
    "X-Stella-Trace-Id",
    "ETag",
    "Deprecation",
    "Link",
    "Retry-After",
    "WWW-Authenticate",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class CorsRules:
    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 600

    @classmethod
    def parse(cls, value: str | None) -> CorsRules:
        """A comma-separated origin list, as configured (`*` allows any origin)."""
        origins = tuple(o.strip() for o in (value or "").split(",") if o.strip())
        return cls(origins=origins)


def with_cors(app: ASGIApp, rules: CorsRules | None) -> ASGIApp:
    if rules is None or not rules.origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(rules.origins),
        allow_methods=list(METHODS),
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        allow_credentials=rules.allow_credentials,
        max_age=rules.max_age,
    )
