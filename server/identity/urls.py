"""The public URLs of this server: issuer, endpoints, and the URL a request was sent to.

The gRPC server does not see the URL a browser or remote site used: TLS and
proxies sit in front of it. The configured public base URL
(`ORCHESTRATOR_PUBLIC_URL`) is therefore authoritative: it is the token issuer
(RFC 8414 §2, RFC 9068 §2.2) and the base of every endpoint. For DPoP's `htu`
(RFC 9449 §4.3) the URL of the request may instead come from the
`x-forwarded-proto` and `x-forwarded-host` metadata, but only when
`trust_forwarded` says the hop that sets them is trusted to overwrite what a
client sent. Without a configured URL the server names itself by the address it
actually serves (`served_url`), which is right for direct local use only.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN_PATH = "/oauth/token"
INTROSPECTION_PATH = "/oauth/introspect"
REVOCATION_PATH = "/oauth/revoke"
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"

# A wildcard bind address names no host a client can send to; its loopback does.
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def is_wildcard(host: str) -> bool:
    """True for the bind-to-every-interface addresses (``0.0.0.0``, ``::``, empty)."""
    return host in _WILDCARD_HOSTS


def served_url(host: str, port: int) -> str:
    """``http://host:port`` of a bound HTTP socket, the public URL when none is configured.

    `host` and `port` are what the socket is bound to (after binding, so port 0 has
    become the real port); a wildcard host becomes its loopback, an IPv6 literal is
    bracketed (RFC 3986 §3.2.2). Always http: TLS sits in front of this server, and
    then ORCHESTRATOR_PUBLIC_URL must name the https URL.
    """
    host = _WILDCARD_HOSTS.get(host, host)
    literal = f"[{host}]" if ":" in host else host
    return f"http://{literal}:{port}"


@dataclass(frozen=True, slots=True)
class PublicUrls:
    base: str  # scheme://host[:port][/prefix], no trailing slash
    trust_forwarded: bool = False

    @classmethod
    def from_setting(cls, public_url: str, *, trust_forwarded: bool = False) -> PublicUrls:
        parts = urlsplit(public_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public URL must be an absolute http(s) URL, got {public_url!r}")
        if parts.query or parts.fragment:
            raise ValueError("public URL must not have a query or fragment")
        base = f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
        return cls(base=base, trust_forwarded=trust_forwarded)

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def audience(self) -> str:
        """The resource indicator (RFC 8707) of the API: the same public base URL."""
        return self.base

    def endpoint(self, path: str) -> str:
        return f"{self.base}{path}"

    def request_url(
        self, path: str, *, forwarded_proto: str | None = None, forwarded_host: str | None = None
    ) -> str:
        """The URL a request for `path` was sent to, as DPoP's `htu` must name it."""
        if self.trust_forwarded and forwarded_proto and forwarded_host:
            proto = forwarded_proto.split(",", 1)[0].strip().lower()
            host = forwarded_host.split(",", 1)[0].strip()
            if proto in ("http", "https") and host:
                prefix = urlsplit(self.base).path
                return f"{proto}://{host}{prefix}{path}"
        return self.endpoint(path)
