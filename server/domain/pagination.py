"""Keyset pagination with opaque, signed continuation tokens (AIP-158).

A token carries the sort key of the last item served and a digest of everything the
listing was bound to (method, tenant, project, filters, sort). It is signed with
HMAC-SHA256 so a client can neither forge a position nor replay a token against
other filters: both are INVALID_ARGUMENT naming `continuationToken`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from server.domain.errors import InvalidArgument

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
TOKEN_FIELD = "continuationToken"
_VERSION = 1

KeyValue = str | int | float | bool | None
T = TypeVar("T")
P = TypeVar("P")


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
        raise InvalidArgument.of("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
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
