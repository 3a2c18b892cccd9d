"""The mesh service registry: registration, listing, OpenAPI polling and peer replication
(seed 002, DESIGN.md §4.4, issue 12 points 4-5).

The registry is platform-wide: one entry per service name, whatever the tenant. Every
entry carries its replication key `(revision, updated_at, origin)`: a local change
sets `revision` to one more than the entry's, `updated_at` to now and `origin` to
this orchestrator's id (one per deployment, shared by its replicas). Replication
is last-writer-wins by that key, compared as a tuple, so a change made after seeing
another always wins, concurrent changes are ordered by time and then by origin, and
applying the same entry twice changes nothing (idempotent). Replicated entries keep
the key they came with and are never forwarded from where they arrive, so
replication cannot echo between peers.

A registered URL must be an absolute http(s) URL without credentials, and must not
point at this server's own registry or peer endpoints: polling or syncing them would
call the caller again, in a loop. The loop check compares host and port (the
scheme is left out: TLS may end in front of us) with this server's addresses.

Polling fetches each service's OpenAPI document through an `OpenApiFetcher`
(`server/mesh/openapi_fetch.py`), stores a snapshot of what it got and reports drift
against the previous snapshot (`domain/openapi_drift.py`). A sync exchanges entries
with each peer through a `PeerLink` (`server/mesh/peers.py`): pull the peer's
registry, push what the peer lacks or holds older, then apply the pulled entries
here, all peers concurrently and each within a timeout. Network calls never run
inside a database transaction; each mutation's changes, events and its one audit
entry commit together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import posixpath
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

import idna

from gateway.text import has_control
from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import Aborted, InvalidArgument, NotFound, Violation
from server.domain.hosts import canonical_host, is_loopback
from server.domain.openapi_drift import Drift, Outline, drift
from server.domain.pagination import TEXT, ListingSpec, Page, PageTokens, SortKey, micros
from server.domain.resources import ResourceType
from server.domain.units import UnitOfWork

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RULE = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(NAME_PATTERN)
_ORIGIN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
URL_MAX = 2048
VERSION_MAX = 64
METADATA_MAX_BYTES = 8 * 1024
REPLICATE_BATCH_MAX = 500
SNAPSHOTS_KEPT = 10  # per service: older snapshots are deleted when a new one is stored
DEFAULT_OPENAPI_PATH = "/openapi.json"
# This server's own endpoints that would call themselves if a registered URL named
# them: the poll fetches registered URLs, a sync calls peers' registries.
LOOP_PATHS = ("/registry", "/peers")
PLATFORM = "*"  # the "tenant" a registry listing's page token is bound to
_DEFAULT_PORTS = {"http": 80, "https": 443}
log = logging.getLogger("orchestrator.mesh")


class ConcurrentChange(Aborted):
    """Another transaction changed the entry between read and write: retried a few
    times, then ABORTED (the caller may retry)."""


# --- the entry -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One registry entry. `metadata` is a JSON object; `updated_at` is aware UTC."""

    name: str
    base_url: str
    openapi_url: str
    version: str
    metadata: Mapping[str, Any]
    revision: int
    origin: str
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[int, datetime, str]:
        """The replication key: last writer wins by it."""
        return (self.revision, self.updated_at, self.origin)

    def same_content(self, other: ServiceEntry) -> bool:
        return (self.base_url, self.openapi_url, self.version, dict(self.metadata)) == (
            other.base_url,
            other.openapi_url,
            other.version,
            dict(other.metadata),
        )


def newer(candidate: ServiceEntry, current: ServiceEntry | None) -> bool:
    """Whether `candidate` wins over `current` (None: absent) by last-writer-wins."""
    return current is None or candidate.key > current.key


def registry_version(entries: Iterable[tuple[str, int, datetime, str]]) -> str:
    """A digest of a registry's (name, revision, updatedAt, origin) tuples: 32 hex
    characters, equal on two servers exactly when both hold the same writes."""
    lines = sorted(
        f"{name}\t{revision}\t{micros(updated)}\t{origin}\n"
        for name, revision, updated, origin in entries
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:32]


def snapshot(entry: ServiceEntry) -> Mapping[str, Any]:
    """The audited view of an entry."""
    return {
        "name": entry.name,
        "baseUrl": entry.base_url,
        "openapiUrl": entry.openapi_url,
        "version": entry.version,
        "metadata": dict(entry.metadata),
        "revision": entry.revision,
        "origin": entry.origin,
    }


SERVICE: ResourceType[ServiceEntry] = ResourceType(
    singular="service",
    collection="services",
    id_field="name",
    id_of=lambda entry: entry.name,
    snapshot=snapshot,
)
# Whole-registry operations (poll, sync, replicate): one audit entry per call, the
# resource "registry/-", the call's outcome as its `after`.
REGISTRY: ResourceType[Mapping[str, Any]] = ResourceType(
    singular="registry",
    collection="registry",
    id_field="registry",
    id_of=lambda _: "-",
    snapshot=lambda outcome: outcome,
)


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    tenant_id: str = PLATFORM
    name_prefix: str | None = None


SERVICE_LISTING: ListingSpec[ServiceEntry, ServiceQuery] = ListingSpec(
    name="registry",
    sort=(SortKey("name", "name", TEXT),),
    filters={"namePrefix": "name_prefix"},
)


# --- what the domain asks of storage ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored OpenAPI snapshot: the document's digest and outline."""

    snapshot_id: str
    service_name: str
    openapi_url: str
    fetched_at: datetime
    digest: str
    size_bytes: int
    outline: Outline
    document: str  # the document's canonical JSON


@dataclass(frozen=True, slots=True)
class PeerState:
    """What the last sync learnt of one peer (`url` without credentials)."""

    url: str
    status: str
    last_contact_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    registry_version: str | None


class ServiceRepository(Protocol):
    """Registry entries inside a unit of work."""

    async def get(self, name: str) -> ServiceEntry | None: ...

    async def save(self, entry: ServiceEntry, *, replacing: ServiceEntry | None) -> None:
        """Insert `entry` (replacing None) or overwrite `replacing`; ConcurrentChange
        when the stored entry is not `replacing` any more (or, inserting, exists)."""
        ...

    async def latest_snapshot(self, name: str) -> Snapshot | None: ...

    async def add_snapshot(self, snapshot: Snapshot, *, keep: int) -> None:
        """Store `snapshot` and delete the service's older ones beyond the newest `keep`."""
        ...

    async def save_peer(self, state: PeerState) -> None: ...


class RegistryUnitOfWork(UnitOfWork, Protocol):
    @property
    def registry(self) -> ServiceRepository: ...


class RegistryStore(Protocol):
    """Registry reads (one round trip each) and units of work."""

    async def page(
        self, query: ServiceQuery, after: tuple[Any, ...] | None, limit: int
    ) -> Sequence[ServiceEntry]: ...

    async def entries(self, names: Sequence[str] | None = None) -> Sequence[ServiceEntry]:
        """The named entries (every entry for None), ordered by name."""
        ...

    async def keys(self) -> Sequence[tuple[str, int, datetime, str]]:
        """Every entry's (name, revision, updated_at, origin)."""
        ...

    async def peers(self) -> Sequence[PeerState]: ...

    def transaction(self) -> AbstractAsyncContextManager[RegistryUnitOfWork]: ...


# --- input checks -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelfAddresses:
    """Where this server is reached: (host, port) pairs, hosts lower case without
    brackets. A URL with one of them is this server."""

    pairs: frozenset[tuple[str, int]] = frozenset()
    # Ports this server listens on at loopback or every interface: there, any loopback
    # spelling (127.0.0.0/8, ::1, localhost, 0.0.0.0) is this server too.
    loopback_ports: frozenset[int] = frozenset()

    def includes(self, url: str) -> bool:
        """Whether `url` reaches this server, hosts compared in their canonical spelling
        (`domain/hosts.py`: `127.1`, `[::ffff:127.0.0.1]` and `127.0.0.1.` are one)."""
        parts = urlsplit(url)
        host = canonical_host(parts.hostname or "")
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
        except ValueError:
            return False
        if port in self.loopback_ports and is_loopback(host):
            return True
        return (host, port) in {(canonical_host(h), p) for h, p in self.pairs}

    def loops(self, url: str) -> bool:
        """Whether `url` is this server's own registry or peer endpoint."""
        if not self.includes(url):
            return False
        path = posixpath.normpath(unquote(urlsplit(url).path) or "/")
        path = "/" + path.lstrip("/")
        return any(path == p or path.startswith(p + "/") for p in LOOP_PATHS)


def url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL without credentials; None when it is.
    The answer never quotes the value, which may hold credentials."""
    if len(value) > URL_MAX:
        return f"must be at most {URL_MAX} characters"
    if has_control(value) or any(c.isspace() for c in value):
        return "must not contain spaces or control characters"
    absolute = "must be an absolute http(s) URL such as https://host:port/path"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"{absolute} (the host or port is malformed)"
    scheme = parts.scheme.lower()
    if scheme and scheme not in _DEFAULT_PORTS and parts.netloc:
        return f"must use http or https, not {scheme!r}"
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return absolute
    if "@" in parts.netloc:
        return "must not carry credentials (user:password@)"
    if not _idna_host(parts.hostname):
        return "must have a host that is a valid internationalized domain name"
    if port == 0:
        return "must not name port 0"
    return None


def _idna_host(host: str) -> bool:
    """Whether `host` is a name httpx can use as the OpenAPI poller will (IDNA 2008, as
    httpx reads it): a non-ASCII name must encode, an `xn--` one decode. `xn--a.com`
    passed registration and its poll failed with idna's InvalidCodepoint; Python's own
    `idna` codec (IDNA 2003) refused `xn--strae-oqa.de` (straße.de), which works."""
    try:
        if not host.isascii():
            idna.encode(host.lower())
        elif host.lower().startswith("xn--"):
            idna.decode(host.lower())
    except (idna.IDNAError, UnicodeError):
        return False
    return True


def _url_violation(name: str, value: str, addresses: SelfAddresses) -> Violation | None:
    problem = url_problem(value)
    if problem is None and addresses.loops(value):
        problem = (
            "points at this server's own registry or peer endpoints, "
            "which would call themselves in a loop"
        )
    return Violation(name, problem) if problem is not None else None


def effective_openapi_url(base_url: str, openapi_url: str) -> str:
    """`openapi_url` as registered: absolute as given, a path resolved against
    `base_url` (RFC 3986 §5.2), or `base_url` + "/openapi.json" when empty."""
    if not openapi_url:
        return base_url.rstrip("/") + DEFAULT_OPENAPI_PATH
    if openapi_url.startswith("/") and not openapi_url.startswith("//"):
        return urljoin(base_url, openapi_url)
    return openapi_url


def _metadata_violation(name: str, metadata: Mapping[str, Any]) -> Violation | None:
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        return Violation(name, f"must be at most {METADATA_MAX_BYTES} bytes as JSON, got {size}")
    return None


def _version_violation(name: str, version: str) -> Violation | None:
    if len(version) > VERSION_MAX:
        return Violation(name, f"must be at most {VERSION_MAX} characters")
    if has_control(version):
        return Violation(name, "must not contain control characters")
    return None


def name_violation(field_name: str, name: str) -> Violation | None:
    if not name:
        return Violation(field_name, "is required")
    if not _NAME.fullmatch(name):
        return Violation(field_name, NAME_RULE)
    return None


@dataclass(frozen=True, slots=True)
class Registration:
    """A RegisterService request: what the caller sends."""

    name: str
    base_url: str
    openapi_url: str
    version: str
    metadata: Mapping[str, Any]


def _checked(registration: Registration, addresses: SelfAddresses) -> Registration:
    violations = [name_violation("name", registration.name)]
    base_bad = (
        Violation("baseUrl", "is required")
        if not registration.base_url
        else _url_violation("baseUrl", registration.base_url, addresses)
    )
    violations.append(base_bad)
    relative = registration.openapi_url.startswith("/") and not registration.openapi_url.startswith(
        "//"
    )
    if registration.openapi_url and not (relative and base_bad is not None):
        resolved = effective_openapi_url(registration.base_url, registration.openapi_url)
        violations.append(_url_violation("openapiUrl", resolved, addresses))
    elif not registration.openapi_url and base_bad is None:
        resolved = effective_openapi_url(registration.base_url, "")
        violations.append(_url_violation("baseUrl", resolved, addresses))
    violations.append(_version_violation("version", registration.version))
    violations.append(_metadata_violation("metadata", registration.metadata))
    bad = [v for v in violations if v is not None]
    if bad:
        raise InvalidArgument.from_violations(bad)
    return replace(
        registration,
        openapi_url=effective_openapi_url(registration.base_url, registration.openapi_url),
    )


def _checked_replica(index: int, entry: ServiceEntry) -> list[Violation]:
    where = f"services[{index}]"
    found = [
        name_violation(f"{where}.name", entry.name),
        Violation(f"{where}.baseUrl", p) if (p := url_problem(entry.base_url)) else None,
        Violation(f"{where}.openapiUrl", p) if (p := url_problem(entry.openapi_url)) else None,
        _version_violation(f"{where}.version", entry.version),
        _metadata_violation(f"{where}.metadata", entry.metadata),
    ]
    if entry.revision < 1:
        found.append(Violation(f"{where}.revision", "must be at least 1"))
    if not _ORIGIN.fullmatch(entry.origin):
        found.append(Violation(f"{where}.origin", "must be an orchestrator id"))
    return [v for v in found if v is not None]


# --- register and list ------------------------------------------------------------------

RETRIES = 5


async def register_service(
    store: RegistryStore,
    call: CallContext,
    registration: Registration,
    *,
    origin: str,
    addresses: SelfAddresses,
    now: Callable[[], datetime],
) -> tuple[ServiceEntry, bool]:
    """Create or update the entry named `registration.name`; (entry, created). An update
    that changes nothing keeps the entry (and its revision) and is still audited.

    Raises InvalidArgument naming every bad field."""
    registration = _checked(registration, addresses)
    for _ in range(RETRIES):
        try:
            async with store.transaction() as uow:
                before = await uow.registry.get(registration.name)
                at = now()
                after = ServiceEntry(
                    name=registration.name,
                    base_url=registration.base_url,
                    openapi_url=registration.openapi_url,
                    version=registration.version,
                    metadata=dict(registration.metadata),
                    revision=(before.revision if before else 0) + 1,
                    origin=origin,
                    created_at=before.created_at if before else at,
                    updated_at=at,
                )
                if before is not None and before.same_content(after):
                    after = before
                else:
                    await uow.registry.save(after, replacing=before)
                    kind = "service.registered" if before is None else "service.updated"
                    await _event(uow, call, kind, after)
                await audit.record(uow, call, SERVICE, before=before, after=after)
            return after, before is None
        except ConcurrentChange:
            continue
    raise ConcurrentChange(f"service {registration.name!r} kept changing; try again")


async def _event(uow: RegistryUnitOfWork, call: CallContext, kind: str, e: ServiceEntry) -> None:
    data = {"revision": e.revision, "origin": e.origin, "version": e.version}
    await uow.events.append(None, kind, SERVICE.name(e.name), data, call.trace_id)


async def list_services(
    store: RegistryStore,
    tokens: PageTokens,
    *,
    name_prefix: str,
    limit: int,
    continuation_token: str,
) -> Page[ServiceEntry]:
    """Raises InvalidArgument for a bad `namePrefix`, `limit` or `continuationToken`."""
    if len(name_prefix) > 64 or has_control(name_prefix):
        raise InvalidArgument.of("namePrefix", "must be at most 64 printable characters")
    query = ServiceQuery(name_prefix=name_prefix or None)
    return await SERVICE_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.page
    )


async def current_version(store: RegistryStore) -> str:
    return registry_version(await store.keys())


# --- replication ------------------------------------------------------------------------


async def _apply(
    uow: RegistryUnitOfWork, call: CallContext, entries: Iterable[ServiceEntry]
) -> list[str]:
    """Apply the entries that win (last writer wins) in `uow`; the names taken."""
    taken: list[str] = []
    for entry in entries:
        current = await uow.registry.get(entry.name)
        if newer(entry, current):
            await uow.registry.save(entry, replacing=current)
            await _event(uow, call, "service.replicated", entry)
            taken.append(entry.name)
    return taken


async def replicate_services(
    store: RegistryStore,
    call: CallContext,
    *,
    sender: str,
    entries: Sequence[ServiceEntry],
) -> tuple[int, str]:
    """A peer's half of a sync: apply its entries here; (entries taken, registry
    version after). Nothing is forwarded from here (no echo).

    Raises InvalidArgument naming the bad entry field (`services[i].baseUrl`), an
    over-long batch or a malformed `origin`; nothing is applied then."""
    violations: list[Violation] = []
    if not _ORIGIN.fullmatch(sender):
        violations.append(Violation("origin", "is required: the sending orchestrator's id"))
    if len(entries) > REPLICATE_BATCH_MAX:
        violations.append(Violation("services", f"must hold at most {REPLICATE_BATCH_MAX}"))
    names: set[str] = set()
    for index, entry in enumerate(entries):
        violations += _checked_replica(index, entry)
        if entry.name in names:
            violations.append(Violation(f"services[{index}].name", "is sent twice"))
        names.add(entry.name)
    if violations:
        raise InvalidArgument.from_violations(violations)
    for _ in range(RETRIES):
        try:
            async with store.transaction() as uow:
                taken = await _apply(uow, call, entries)
                outcome = {"sender": sender, "received": len(entries), "accepted": taken}
                await audit.record(uow, call, REGISTRY, before=None, after=outcome)
            return len(taken), await current_version(store)
        except ConcurrentChange:
            continue
    raise ConcurrentChange("the registry kept changing; try again")


class PeerFailure(Exception):
    """A peer could not be synced: `status` is "unreachable", "timeout",
    "unauthorized", "failed" or "self"; the message says why, without credentials."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Pushed:
    accepted: int
    registry_version: str
    origin: str


class PeerLink(Protocol):
    """One peer orchestrator, reached over its REST API. Raises PeerFailure."""

    @property
    def url(self) -> str:
        """The peer's base URL, without credentials."""
        ...

    async def pull(self) -> Sequence[ServiceEntry]:
        """Every entry of the peer's registry."""
        ...

    async def push(
        self, origin: str, entries: Sequence[ServiceEntry], *, reason: str, trace_id: str
    ) -> Pushed:
        """Send `entries` (in batches) to the peer's ReplicateServices."""
        ...


@dataclass(slots=True)
class PeerResult:
    url: str
    status: str = "synced"
    message: str | None = None
    sent: int = 0
    accepted_by_peer: int = 0
    received: int = 0
    applied: int = 0
    registry_version: str | None = None
    duration_ms: int = 0
    pulled: Sequence[ServiceEntry] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SyncLimits:
    timeout: float  # seconds per peer, the whole exchange
    concurrency: int  # peers exchanged with at once


async def sync_peers(
    store: RegistryStore,
    call: CallContext,
    links: Sequence[PeerLink],
    *,
    origin: str,
    addresses: SelfAddresses,
    limits: SyncLimits,
    now: Callable[[], datetime],
) -> tuple[list[PeerResult], str]:
    """Exchange entries with every peer (concurrently, each within `limits.timeout`),
    then apply what the peers had newer here, record each peer's state and one audit
    entry in one transaction; (results ordered by URL, registry version after).
    Never raises for a peer's failure: it is that peer's result."""
    local = {entry.name: entry for entry in await store.entries()}
    gate = asyncio.Semaphore(max(1, limits.concurrency))
    # Forwarded as the peer's X-Stella-Operator-Reason: an HTTP header is ASCII.
    said = call.operator_reason or "no reason given"
    said = said.encode("ascii", "backslashreplace").decode("ascii")
    reason = f"sync-peers from {origin}: {said}"[:1024]

    async def exchange(link: PeerLink) -> PeerResult:
        result = PeerResult(url=link.url)
        started = time.monotonic()
        try:
            if addresses.includes(link.url):
                raise PeerFailure("self", "the peer URL is this server itself")
            async with gate, asyncio.timeout(limits.timeout):
                pulled = await link.pull()
                for index, entry in enumerate(pulled):
                    if bad := _checked_replica(index, entry):
                        problem = f"{bad[0].field}: {bad[0].description}"
                        raise PeerFailure("failed", f"{link.url} sent an invalid entry: {problem}")
                result.received, result.pulled = len(pulled), pulled
                theirs = {entry.name: entry for entry in pulled}
                wanted = [e for e in local.values() if newer(e, theirs.get(e.name))]
                pushed = await link.push(origin, wanted, reason=reason, trace_id=call.trace_id)
                if pushed.origin == origin:
                    raise PeerFailure("self", "the peer is this orchestrator (same origin id)")
                result.sent, result.accepted_by_peer = len(wanted), pushed.accepted
                result.registry_version = pushed.registry_version
        except TimeoutError:
            result.status = "timeout"
            result.message = f"no answer within {limits.timeout:g} s"
        except PeerFailure as failure:
            result.status, result.message = failure.status, str(failure)
        except Exception as exc:  # one peer's surprise must not fail the whole sync
            log.exception("sync with %s failed", link.url)
            result.status, result.message = "failed", f"unexpected {type(exc).__name__}"
        if result.status != "synced":
            result.pulled, result.received, result.sent = (), 0, 0
        result.duration_ms = int((time.monotonic() - started) * 1000)
        return result

    results = sorted(await asyncio.gather(*(exchange(p) for p in links)), key=lambda r: r.url)
    known = {state.url: state for state in await store.peers()}
    for _ in range(RETRIES):
        try:
            async with store.transaction() as uow:
                at = now()
                for result in results:
                    result.applied = len(await _apply(uow, call, _winners(result.pulled)))
                    await uow.registry.save_peer(_state(result, at, known.get(result.url)))
                    await uow.events.append(
                        None,
                        "peer.synced" if result.status == "synced" else "peer.sync_failed",
                        f"peers/{result.url}",
                        {"status": result.status, "applied": result.applied},
                        call.trace_id,
                    )
                await audit.record(uow, call, REGISTRY, before=None, after=_outcome(results))
            return results, await current_version(store)
        except ConcurrentChange:
            continue
    raise ConcurrentChange("the registry kept changing; try again")


def _winners(entries: Sequence[ServiceEntry]) -> list[ServiceEntry]:
    """One entry per name (the newest), as a peer's listing may not repeat names anyway."""
    best: dict[str, ServiceEntry] = {}
    for entry in entries:
        if newer(entry, best.get(entry.name)):
            best[entry.name] = entry
    return list(best.values())


def _state(result: PeerResult, at: datetime, previous: PeerState | None) -> PeerState:
    """The peer's new state; a failure keeps the last contact and version known."""
    if result.status == "synced":
        return PeerState(result.url, "synced", at, at, None, result.registry_version)
    return PeerState(
        url=result.url,
        status=result.status,
        last_contact_at=previous.last_contact_at if previous else None,
        last_attempt_at=at,
        last_error=result.message,
        registry_version=previous.registry_version if previous else None,
    )


def _outcome(results: Sequence[PeerResult]) -> Mapping[str, Any]:
    return {
        "peers": [
            {
                "url": r.url,
                "status": r.status,
                "sent": r.sent,
                "acceptedByPeer": r.accepted_by_peer,
                "received": r.received,
                "applied": r.applied,
            }
            for r in results
        ]
    }


async def list_peers(store: RegistryStore, urls: Sequence[str]) -> list[PeerState]:
    """The configured peers (`urls`, without credentials), ordered by URL, each with
    its last recorded state ("unknown" when never synced)."""
    known = {state.url: state for state in await store.peers()}
    return [
        known.get(url) or PeerState(url, "unknown", None, None, None, None)
        for url in sorted(set(urls))
    ]


# --- OpenAPI polling --------------------------------------------------------------------


class FetchFailure(Exception):
    """A document could not be had: `code` is UNREACHABLE, TIMEOUT, HTTP_ERROR,
    TOO_LARGE, NOT_JSON, NOT_OPENAPI or LOOP; the message says what happened."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched document: its outline, digest, canonical JSON and size in bytes."""

    outline: Outline
    digest: str
    document: str
    size_bytes: int


OpenApiFetcher = Callable[[str], Awaitable[Fetched]]  # raises FetchFailure


@dataclass(frozen=True, slots=True)
class PollResult:
    name: str
    openapi_url: str
    status: str  # initial, unchanged, drifted, failed
    fetched_at: datetime
    snapshot: Snapshot | None = None
    previous_snapshot_id: str | None = None
    drift: Drift = field(default_factory=Drift)
    error_code: str | None = None
    error_message: str | None = None
    size_bytes: int = 0


async def poll_openapi(
    store: RegistryStore,
    call: CallContext,
    fetch: OpenApiFetcher,
    *,
    names: Sequence[str],
    concurrency: int,
    now: Callable[[], datetime],
) -> list[PollResult]:
    """Fetch the documents of the named services (every service when empty), at most
    `concurrency` at once; store a snapshot of each one fetched and answer the drift
    since the previous one, per service, ordered by name. A failed fetch is that
    service's result, never the call's error.

    Raises InvalidArgument for a malformed name, NotFound for an unregistered one."""
    violations = [name_violation(f"names[{i}]", name) for i, name in enumerate(names)]
    if bad := [v for v in violations if v is not None]:
        raise InvalidArgument.from_violations(bad)
    entries = await store.entries(sorted(set(names)) if names else None)
    missing = sorted(set(names) - {entry.name for entry in entries})
    if missing:
        raise NotFound.of(SERVICE, missing[0])
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(entry: ServiceEntry) -> tuple[ServiceEntry, Fetched | FetchFailure, datetime]:
        async with gate:
            at = now()
            try:
                return entry, await fetch(entry.openapi_url), at
            except FetchFailure as failure:
                return entry, failure, at
            except Exception as exc:  # one service's surprise must not fail the poll
                log.exception("fetching %s failed", entry.openapi_url)
                message = f"GET {entry.openapi_url} failed: {type(exc).__name__}"
                return entry, FetchFailure("UNREACHABLE", message), at

    fetched = await asyncio.gather(*(one(entry) for entry in entries))
    for _ in range(RETRIES):
        try:
            async with store.transaction() as uow:
                results = [await _record_poll(uow, call, *item) for item in fetched]
                summary = {"services": {r.name: r.status for r in results}}
                await audit.record(uow, call, REGISTRY, before=None, after=summary)
            return results
        except ConcurrentChange:
            continue
    raise ConcurrentChange("the registry kept changing; try again")


async def _record_poll(
    uow: RegistryUnitOfWork,
    call: CallContext,
    entry: ServiceEntry,
    got: Fetched | FetchFailure,
    at: datetime,
) -> PollResult:
    subject = SERVICE.name(entry.name)
    if isinstance(got, FetchFailure):
        data = {"code": got.code, "message": str(got)}
        await uow.events.append(None, "service.openapi_failed", subject, data, call.trace_id)
        return PollResult(
            entry.name, entry.openapi_url, "failed", at, error_code=got.code, error_message=str(got)
        )
    previous = await uow.registry.latest_snapshot(entry.name)
    stored = Snapshot(
        snapshot_id=str(uuid.uuid4()),
        service_name=entry.name,
        openapi_url=entry.openapi_url,
        fetched_at=at,
        digest=got.digest,
        size_bytes=got.size_bytes,
        outline=got.outline,
        document=got.document,
    )
    await uow.registry.add_snapshot(stored, keep=SNAPSHOTS_KEPT)
    found = drift(previous.outline, got.outline) if previous is not None else Drift()
    status = "initial" if previous is None else "unchanged" if found.empty else "drifted"
    data = {"snapshotId": stored.snapshot_id, "status": status, "digest": got.digest}
    await uow.events.append(None, f"service.openapi_{status}", subject, data, call.trace_id)
    return PollResult(
        name=entry.name,
        openapi_url=entry.openapi_url,
        status=status,
        fetched_at=at,
        snapshot=stored,
        previous_snapshot_id=previous.snapshot_id if previous is not None else None,
        drift=found,
        size_bytes=got.size_bytes,
    )
