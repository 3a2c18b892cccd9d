"""HTTP headers <-> gRPC metadata, by one documented, configurable rule.

Requests: a header is forwarded when its lower-case name is in `forward` or starts
with one of `forward_prefixes` (`Grpc-Metadata-*` loses its prefix, as in
grpc-gateway). Hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded, whatever
the configuration says.

Responses: metadata whose key is in `expose` becomes a header of the same name in
canonical case; any other non-binary key becomes `Grpc-Metadata-<key>`. Reserved
gRPC keys (`grpc-*`, `:*`, `content-type`) never leave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

DEFAULT_FORWARD = frozenset(
    {
        "authorization",
        "dpop",
        "traceparent",
        "tracestate",
        "idempotency-key",
        "x-request-id",
    }
)
DEFAULT_FORWARD_PREFIXES = ("x-stella-", "x-stellaops-", "grpc-metadata-")
DEFAULT_EXPOSE = frozenset(
    {"x-stella-trace-id", "deprecation", "link", "retry-after", "www-authenticate"}
)
METADATA_PREFIX = "grpc-metadata-"


@dataclass(frozen=True, slots=True)
class HeaderRules:
    forward: frozenset[str] = DEFAULT_FORWARD
    forward_prefixes: tuple[str, ...] = DEFAULT_FORWARD_PREFIXES
    expose: frozenset[str] = DEFAULT_EXPOSE

    def outgoing_metadata(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        metadata: list[tuple[str, str]] = []
        for raw_name, value in headers:
            name = raw_name.lower()
            if name in HOP_BY_HOP or name.endswith("-bin"):
                continue
            if name.startswith(METADATA_PREFIX):
                name = name[len(METADATA_PREFIX) :]
                if not name or name.startswith("grpc-") or name in HOP_BY_HOP:
                    continue
                metadata.append((name, value))
            elif name in self.forward or name.startswith(self.forward_prefixes):
                metadata.append((name, value))
        return metadata

    def response_headers(
        self, metadata: Sequence[tuple[str, str | bytes]]
    ) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        for key, value in metadata:
            key = key.lower()
            if isinstance(value, bytes) or key.endswith("-bin") or _reserved(key):
                continue
            if key in self.expose:
                headers.append((_canonical(key), value))
            else:
                headers.append((f"Grpc-Metadata-{_canonical(key)}", value))
        return headers


def _reserved(key: str) -> bool:
    return key.startswith(("grpc-", ":")) or key in {"content-type", "user-agent", "te"}


def _canonical(key: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in key.split("-"))
