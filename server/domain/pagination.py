"""Keyset pagination with opaque, signed continuation tokens (AIP-158).

A token carries the sort key of the last item served and a digest of everything the
listing was bound to (method, tenant, project, filters, sort). It is signed with
HMAC-SHA256 so a client can neither forge a position nor replay a token against
other filters: both are INVALID_ARGUMENT naming `continuationToken`.

Every listing is one `ListingSpec` (its name, sort keys with their token codecs, and
which query fields bind a token) consumed by the one `keyset_page` step; repositories
read "up to `limit + 1` rows after this position" in the spec's order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from server.domain.errors import InvalidArgument

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
TOKEN_FIELD = "continuationToken"
_VERSION = 1

KeyValue = str | int | float | bool | None
T = TypeVar("T")
P = TypeVar("P")
Q = TypeVar("Q", bound="TenantQuery")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page request: the effective limit and the position to resume after."""

    limit: int
    after: tuple[KeyValue, ...] | None


def effective_limit(limit: int) -> int:
    """0 means the default; above the maximum is coerced, below 1 is refused (AIP-158)."""
    if limit == 0:
        return DEFAULT_LIMIT
    if limit < 0:
        raise InvalidArgument.of(
            "limit",
            f"must not be negative (0 means the default of {DEFAULT_LIMIT}; above {MAX_LIMIT}"
            f" means {MAX_LIMIT}), got {limit}",
        )
    return min(limit, MAX_LIMIT)


class PageTokens:
    """Signs and checks continuation tokens with one secret shared by all replicas."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("page token secret must be at least 16 bytes")
        self._secret = secret

    def page_request(self, *, limit: int, token: str, binding: Mapping[str, Any]) -> PageRequest:
        after = self.decode(token, binding=binding) if token else None
        return PageRequest(limit=effective_limit(limit), after=after)

    def encode(self, key: Sequence[KeyValue], *, binding: Mapping[str, Any]) -> str:
        payload = json.dumps(
            {"v": _VERSION, "k": list(key), "b": _digest(binding)}, separators=(",", ":")
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, token: str, *, binding: Mapping[str, Any]) -> tuple[KeyValue, ...]:
        body, _, signature = token.partition(".")
        try:
            payload = _unb64(body)
            valid = hmac.compare_digest(_unb64(signature), self._sign(payload))
        except ValueError:
            valid = False
        if not valid:
            raise InvalidArgument.of(
                TOKEN_FIELD, "is not a token this server issued", reason="INVALID_PAGE_TOKEN"
            )
        data = json.loads(payload)
        if data.get("v") != _VERSION or data.get("b") != _digest(binding):
            raise InvalidArgument.of(
                TOKEN_FIELD,
                "was issued for a different tenant, filter or sort; start from the first page",
                reason="PAGE_TOKEN_MISMATCH",
            )
        return tuple(data["k"])

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


def _digest(binding: Mapping[str, Any]) -> str:
    canonical = json.dumps(binding, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or non-ascii token part")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from exc


async def keyset_page(
    tokens: PageTokens,
    *,
    limit: int,
    token: str,
    binding: Mapping[str, Any],
    position: Callable[[tuple[KeyValue, ...]], P],
    read: Callable[[P | None, int], Awaitable[Sequence[T]]],
    key: Callable[[T], Sequence[KeyValue]],
) -> tuple[list[T], str | None]:
    """One page of any keyset listing: `position` checks the decoded token's key for this
    listing, `read(after, limit)` returns up to `limit + 1` rows after it in the
    listing's total order (the extra row says there is a next page), and `key` is the
    sort key of a row, which the next page's token carries."""
    page = tokens.page_request(limit=limit, token=token, binding=binding)
    after = position(page.after) if page.after is not None else None
    rows = await read(after, page.limit)
    items = list(rows[: page.limit])
    if len(rows) <= page.limit:
        return items, None
    return items, tokens.encode(key(items[-1]), binding=binding)


# --- listing specs ----------------------------------------------------------------------


class TenantQuery(Protocol):
    """What every listing's query has: the tenant it reads, which every token binds."""

    @property
    def tenant_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page: the items and the token of the next page (None on the last)."""

    items: Sequence[T]
    continuation_token: str | None


@dataclass(frozen=True, slots=True)
class KeyCodec:
    """How one sort key's value travels in a token: `encode` a row's value to JSON,
    `decode` it back, or None when the JSON value is not one of this key's."""

    encode: Callable[[Any], KeyValue]
    decode: Callable[[KeyValue], Any]


def micros(value: datetime) -> int:
    """A stored time as integer microseconds since the epoch: exact in a page token, where
    a float or a formatted string could drift. SQLite hands back naive UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


_MIN_MICROS = micros(datetime(1, 1, 1, tzinfo=UTC))
_MAX_MICROS = micros(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))


def _text(value: KeyValue) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: KeyValue) -> datetime | None:
    if type(value) is not int or not _MIN_MICROS <= value <= _MAX_MICROS:
        return None  # bool is not an int here, nor is a float
    return _EPOCH + timedelta(microseconds=value)


TEXT = KeyCodec(encode=str, decode=_text)
TIME = KeyCodec(encode=micros, decode=_time)  # aware UTC datetimes, microsecond exact


@dataclass(frozen=True, slots=True)
class SortKey:
    """One key of a listing's total order: `name` as the API spells it ("-" first for
    descending, e.g. "-createdAt"), the row `attribute` it reads and its token codec."""

    name: str
    attribute: str
    codec: KeyCodec

    @property
    def descending(self) -> bool:
        return self.name.startswith("-")


@dataclass(frozen=True, slots=True)
class ListingSpec(Generic[T, Q]):
    """One keyset listing (AIP-158): `name` and `sort` are bound into every token, as are
    the query's fields named by `filters` (token name -> query attribute; datetimes
    bind as microseconds). The sort ends in the id, so the order is total; every key
    runs the same direction, so "after a position" is one tuple comparison."""

    name: str
    sort: tuple[SortKey, ...]
    filters: Mapping[str, str]

    def __post_init__(self) -> None:
        if len({key.descending for key in self.sort}) != 1:
            raise ValueError(f"listing {self.name}: every sort key must run the same direction")

    @property
    def descending(self) -> bool:
        return self.sort[0].descending

    def binding(self, query: Q) -> dict[str, Any]:
        """What a token of this listing is bound to: the listing, tenant, filters, sort."""
        binding: dict[str, Any] = {"list": self.name, "tenant": query.tenant_id}
        for name, attribute in self.filters.items():
            value = getattr(query, attribute)
            binding[name] = micros(value) if isinstance(value, datetime) else value
        binding["sort"] = tuple(key.name for key in self.sort)
        return binding

    def key(self, row: T) -> tuple[KeyValue, ...]:
        """The sort key of `row`, as the next page's token carries it."""
        return tuple(key.codec.encode(getattr(row, key.attribute)) for key in self.sort)

    def position(self, key: tuple[KeyValue, ...]) -> tuple[Any, ...]:
        """The row position a signed token's key names; a well-signed key of another shape
        (another listing's, a server bug or a leaked secret) is the caller's bad token."""
        if len(key) == len(self.sort):
            decoded = tuple(k.codec.decode(v) for k, v in zip(self.sort, key, strict=True))
            if all(part is not None for part in decoded):
                return decoded
        raise InvalidArgument.of(TOKEN_FIELD, "does not point into this listing")

    async def page(
        self,
        tokens: PageTokens,
        query: Q,
        *,
        limit: int,
        token: str,
        read: Callable[[Q, tuple[Any, ...] | None, int], Awaitable[Sequence[T]]],
    ) -> Page[T]:
        """One page of `query`: `read(query, after, limit)` returns up to `limit + 1` rows
        after the position `after` (None: from the start) in this listing's order."""

        async def rows(after: tuple[Any, ...] | None, page_limit: int) -> Sequence[T]:
            return await read(query, after, page_limit)

        items, next_token = await keyset_page(
            tokens,
            limit=limit,
            token=token,
            binding=self.binding(query),
            position=self.position,
            read=rows,
            key=self.key,
        )
        return Page(items=items, continuation_token=next_token)
