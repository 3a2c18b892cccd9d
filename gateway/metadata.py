"""HTTP headers <-> gRPC metadata, by one documented, configurable rule.

Requests: a header is forwarded when its lower-case name is in `forward` or starts
with one of `forward_prefixes` (`Grpc-Metadata-*` loses its prefix, as in
grpc-gateway); a name gRPC cannot carry (`X-Api-A!b`) is not. Hop-by-hop headers
(RFC 9110 §7.6.1) are never forwarded, whatever the configuration says. A value
with octets gRPC metadata cannot carry (HTAB, obs-text: anything but printable
ASCII) is forwarded percent-encoded, `%` included, in every mode alike: the server
sees a value it can refuse by its own rules, and the call never breaks on it.

Forwarded request: the gRPC server must know the HTTP request a transcoded call
came from (DPoP proofs name its method and URL, RFC 9449 §4.3), so the gateway
never forwards client-supplied `X-Forwarded-*` or `Forwarded` headers as they are,
by name or through `Grpc-Metadata-` (`Grpc-Metadata-X-Forwarded-Uri` is dropped),
whatever the allow-list says, and sets these keys itself on every upstream call:

- `x-forwarded-method`: the HTTP method, upper case;
- `x-forwarded-uri`: the request path exactly as received (percent-encoding kept,
  any byte outside printable ASCII percent-encoded), without the query string;
- `x-forwarded-proto`: the scheme of the gateway's own connection;
- `x-forwarded-host`: the Host header (the server address when there is none);
  a Host that is not an RFC 3986 host[:port] is a 400;
- `x-forwarded-for`: the peer address (`unknown` when the server reports none).

With `trust_forwarded` (the gateway sits behind a proxy that overwrites these
headers) the first value of the incoming `X-Forwarded-Proto` and
`X-Forwarded-Host` replace the gateway's own, and the peer is appended to the
incoming `X-Forwarded-For`. The method and the URI are always the gateway's own.
The peer and scheme come from the ASGI scope (`client`, `scheme`), so the ASGI server
must not rewrite them from these headers first: run uvicorn with
`proxy_headers=False` (its default believes them from 127.0.0.1).

Responses: metadata whose key is in `expose` becomes a header of the same name in
canonical case; any other non-binary key becomes `Grpc-Metadata-<key>`. Reserved
gRPC keys (`grpc-*`, `:*`, `content-type`) never leave.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote_from_bytes

from google.rpc import code_pb2

from gateway.errors import GatewayError, status_error

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
# Product-neutral defaults: standard request headers (RFC 9110 Authorization, RFC
# 9449 DPoP, W3C Trace Context, Idempotency-Key) and the explicit `Grpc-Metadata-`
# escape; an API with headers of its own adds its prefixes (`HeaderRules`).
DEFAULT_FORWARD_PREFIXES: tuple[str, ...] = ("grpc-metadata-",)
DEFAULT_EXPOSE = frozenset({"deprecation", "link", "retry-after", "www-authenticate"})
METADATA_PREFIX = "grpc-metadata-"
FORWARDED_PREFIX = "x-forwarded-"
UNKNOWN_PEER = "unknown"  # RFC 7239 §6.3

# RFC 3986 §3.2.2-3.2.3: IP-literal or reg-name (IPv4 is a reg-name here), then :port.
_HOST_SYNTAX = re.compile(
    r"(\[[0-9A-Za-z:.\-_~!$&'()*+,;=]+\]|[0-9A-Za-z.\-_~%!$&'()*+,;=]+)(:[0-9]*)?"
)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")  # RFC 3986 §3.1, lower-cased
_KEY = re.compile(r"[0-9a-z_.\-]+")  # what gRPC allows in a non-binary metadata key
# Bytes of a raw path that stay as written in x-forwarded-uri: printable ASCII but
# space, so existing escapes (and every character a path may carry) are kept.
_URI_SAFE = bytes(range(0x21, 0x7F))
_URI_UNSAFE = re.compile(rb"[^\x21-\x7e]")
_VALUE_SAFE = bytes(b for b in range(0x20, 0x7F) if b != ord("%"))
Scope = Mapping[str, Any]

# What one request header is to the gateway (`HeaderRules.read` plans each name once).
_DROP, _FORWARD, _READ, _THE_HOST, _XF_PROTO, _XF_HOST, _XF_FOR = range(7)
# Headers the gateway itself reads (first value), besides those it forwards.
READ_HEADERS = frozenset(
    {
        "accept",
        "content-length",
        "content-type",
        "grpc-timeout",
        "if-none-match",
        "x-server-timeout",
    }
)
# Headers of one value (RFC 9110 §5.3: not list-based) that the gateway reads: two
# different values leave it unknowable which one the client meant.
_SINGLETONS: Final = {
    "content-type": "Content-Type",
    "grpc-timeout": "grpc-timeout",
    "x-server-timeout": "X-Server-Timeout",
}
_TRUSTED = {
    "x-forwarded-proto": _XF_PROTO,
    "x-forwarded-host": _XF_HOST,
    "x-forwarded-for": _XF_FOR,
}
_PLAN_LIMIT = 1024  # names are the client's to choose: keep the memo bounded


@dataclass(slots=True)
class RequestHead:
    """One request's headers as the gateway uses them: the upstream metadata (the
    allow-listed headers, then the `x-forwarded-*` keys) and the first value of each
    header in READ_HEADERS."""

    metadata: list[tuple[str, str]]
    fields: dict[str, str]

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass(frozen=True, slots=True)
class HeaderRules:
    forward: frozenset[str] = DEFAULT_FORWARD
    forward_prefixes: tuple[str, ...] = DEFAULT_FORWARD_PREFIXES
    expose: frozenset[str] = DEFAULT_EXPOSE
    _plans: dict[bytes, tuple[int, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Metadata key -> the response header it becomes (None: it stays here), memoized
    # like `_plans`: a server answers with the same few keys on every call.
    _answers: dict[str, str | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def metadata_key(self, name: str) -> str | None:
        """The metadata key an HTTP header travels under, or None when it stays here."""
        name = name.lower()
        if name in HOP_BY_HOP or name.endswith("-bin") or _forwarding(name):
            return None
        if name.startswith(METADATA_PREFIX):
            name = name[len(METADATA_PREFIX) :]
            if not name or name.startswith("grpc-") or name in HOP_BY_HOP or _forwarding(name):
                return None
        elif name not in self.forward and not name.startswith(self.forward_prefixes):
            return None
        if _KEY.fullmatch(name) is None:
            return None  # an HTTP token gRPC cannot name (`X-Api-A!b`)
        return name

    def outgoing_metadata(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The allow-listed headers as metadata; never hop-by-hop or forwarding headers."""
        metadata: list[tuple[str, str]] = []
        for raw_name, value in headers:
            key = self.metadata_key(raw_name)
            if key is not None:
                metadata.append((key, _carried(value)))
        return metadata

    def read(self, scope: Scope, *, trust: bool = False) -> RequestHead:
        """Everything the gateway takes from one ASGI request's headers, in one pass:
        `outgoing_metadata` plus `forwarded_metadata`, and the READ_HEADERS."""
        metadata: list[tuple[str, str]] = []
        fields: dict[str, str] = {}
        forwarded = _Forwarded()
        plans = self._plans
        for raw_name, raw_value in scope.get("headers", ()):
            plan = plans.get(raw_name)
            if plan is None:
                plan = self._plan(bytes(raw_name))
            kind, name = plan
            if kind == _DROP:
                continue
            value = bytes(raw_value).decode("latin-1")
            if kind == _FORWARD:
                metadata.append((name, _carried(value)))
            elif kind == _READ:
                first = fields.setdefault(name, value)
                if first != value and name in _SINGLETONS:
                    raise _bad_header(_SINGLETONS[name], "sent twice with different values")
            elif kind == _THE_HOST:
                forwarded.host(value)
            elif trust:
                forwarded.trusted(kind, value)
        metadata += forwarded.metadata(scope)
        return RequestHead(metadata, fields)

    def _plan(self, raw_name: bytes) -> tuple[int, str]:
        name = raw_name.decode("latin-1").lower()
        key = self.metadata_key(name)
        if key is not None:
            plan = (_FORWARD, key)
        elif name in READ_HEADERS:
            plan = (_READ, name)
        elif name == "host":
            plan = (_THE_HOST, name)
        else:
            plan = (_TRUSTED.get(name, _DROP), name)
        if len(self._plans) >= _PLAN_LIMIT:
            self._plans.clear()
        self._plans[raw_name] = plan
        return plan

    def response_headers(
        self, metadata: Sequence[tuple[str, str | bytes]]
    ) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        answers = self._answers
        for key, value in metadata:
            if isinstance(value, bytes):
                continue
            try:
                name = answers[key]
            except KeyError:
                name = self._answer(key)
            if name is not None:
                headers.append((name, value))
        return headers

    def _answer(self, key: str) -> str | None:
        lowered = key.lower()
        name: str | None
        if lowered.endswith("-bin") or _reserved(lowered):
            name = None
        elif lowered in self.expose:
            name = _canonical(lowered)
        else:
            name = f"Grpc-Metadata-{_canonical(lowered)}"
        if len(self._answers) >= _PLAN_LIMIT:
            self._answers.clear()
        self._answers[key] = name
        return name


class _Forwarded:
    """Collects the headers the `x-forwarded-*` metadata is made from."""

    __slots__ = ("_chain", "_forwarded_host", "_host", "_proto")

    def __init__(self) -> None:
        self._host: str | None = None
        self._proto: str | None = None
        self._forwarded_host: str | None = None
        self._chain: list[str] = []

    def host(self, value: str) -> None:
        if self._host is None:
            self._host = value.strip()

    def trusted(self, kind: int, value: str) -> None:
        """One X-Forwarded-Proto/-Host/-For header from a trusted proxy."""
        if kind == _XF_PROTO:
            if self._proto is None:
                self._proto = _first(value)
        elif kind == _XF_HOST:
            if self._forwarded_host is None:
                self._forwarded_host = _first(value)
        elif value.strip():
            self._chain.append(_carried(value.strip()))

    def metadata(self, scope: Scope) -> list[tuple[str, str]]:
        if self._forwarded_host:
            host = _checked_host("X-Forwarded-Host", self._forwarded_host)
        elif self._host:
            host = _checked_host("Host", self._host)
        else:
            host = _server(scope)
        proto = self._proto
        if proto:
            proto = proto.lower()
            if _SCHEME.fullmatch(proto) is None:
                raise _bad_header("X-Forwarded-Proto", "is not a URI scheme")
        else:
            proto = str(scope.get("scheme") or "http")
        peer = _peer(scope)
        return [
            ("x-forwarded-method", str(scope["method"]).upper()),
            ("x-forwarded-uri", request_uri(scope)),
            ("x-forwarded-proto", proto),
            ("x-forwarded-host", host),
            ("x-forwarded-for", ", ".join((*self._chain, peer)) if self._chain else peer),
        ]


def forwarded_metadata(scope: Scope, *, trust: bool = False) -> list[tuple[str, str]]:
    """The `x-forwarded-*` metadata of one ASGI HTTP request (see the module docstring)."""
    forwarded = _Forwarded()
    for raw_name, raw_value in scope.get("headers", ()):
        name = bytes(raw_name).decode("latin-1").lower()
        if name == "host":
            forwarded.host(bytes(raw_value).decode("latin-1"))
        elif trust and name in _TRUSTED:
            forwarded.trusted(_TRUSTED[name], bytes(raw_value).decode("latin-1"))
    return forwarded.metadata(scope)


def request_uri(scope: Scope) -> str:
    """The path as received, without the query; bytes gRPC cannot carry are escaped."""
    raw = scope.get("raw_path")
    path = bytes(raw).split(b"?", 1)[0] if raw else str(scope.get("path") or "/").encode()
    if _URI_UNSAFE.search(path) is None:
        return path.decode("ascii")
    return quote_from_bytes(path, safe=_URI_SAFE)


def _forwarding(name: str) -> bool:
    return name.startswith(FORWARDED_PREFIX) or name == "forwarded"


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else UNKNOWN_PEER


def _server(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return ""
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in str(host) else str(host)
    return host if port is None else f"{host}:{port}"


def _checked_host(header: str, value: str) -> str:
    if _HOST_SYNTAX.fullmatch(value) is None:
        raise _bad_header(header, "is not a host[:port]")
    return value


def _carried(value: str) -> str:
    """A header value as metadata. gRPC carries printable ASCII only; a value with any
    other octet (HTAB, obs-text: legal HTTP, RFC 9110 §5.5) travels percent-encoded,
    `%` included, so the server sees it, opaque, and judges it by its own rules."""
    if value.isascii() and value.isprintable():
        return value
    try:
        octets = value.encode("latin-1")  # ASGI header values are latin-1 decoded bytes
    except UnicodeEncodeError:
        octets = value.encode()
    return quote_from_bytes(octets, safe=_VALUE_SAFE)


def _bad_header(header: str, problem: str) -> GatewayError:
    return status_error(
        code_pb2.INVALID_ARGUMENT,
        f"malformed {header} header: {problem}",
        field_name=header,
        reason="BAD_HEADER",
    )


def _reserved(key: str) -> bool:
    return key.startswith(("grpc-", ":")) or key in {"content-type", "user-agent", "te"}


def _canonical(key: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in key.split("-"))
