from __future__ import annotations

import pytest

from server.domain.errors import InvalidArgument, Violation
from server.domain.pagination import PageRequest, PageTokens, effective_limit

BINDING = {"list": "sources", "tenant": "a", "enabled": None}


@pytest.mark.parametrize(
    ("asked", "served"),
    [(0, 50), (1, 1), (50, 50), (199, 199), (200, 200), (201, 200), (10_000, 200)],
    ids=["default", "one", "fifty", "199", "max", "just-above", "far-above"],
)
def test_limit_default_and_coercion(asked: int, served: int) -> None:
    assert effective_limit(asked) == served


@pytest.mark.parametrize("asked", [-1, -200])
def test_negative_limit_is_invalid_naming_limit(asked: int) -> None:
    with pytest.raises(InvalidArgument) as err:
        effective_limit(asked)
    assert err.value.violations[0].field == "limit"
    assert (
        str(err.value)
        == "limit: must not be negative (0 means the default of 50; above 200 means 200),"
        f" got {asked}"
    )


def test_token_round_trips_the_key() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(("name", "id-1"), binding=BINDING)
    assert tokens.decode(token, binding=BINDING) == ("name", "id-1")
    assert tokens.page_request(limit=0, token=token, binding=BINDING).after == ("name", "id-1")


@pytest.mark.parametrize(
    "token",
    ["garbage", "", ".", "a.b", "é.é", "eyJ2IjoxfQ.AAAA"],
    ids=["garbage", "empty", "dot", "short", "non-ascii", "unsigned"],
)
def test_garbage_tokens_are_invalid(token: str) -> None:
    tokens = PageTokens(b"k" * 32)
    with pytest.raises(InvalidArgument) as err:
        tokens.decode(token, binding=BINDING)
    assert err.value.reason == "INVALID_PAGE_TOKEN"
    assert err.value.violations == (
        Violation("continuationToken", "is not a token this server issued"),
    )


def test_an_empty_token_asks_for_the_first_page() -> None:
    """AIP-158: an empty token is the first page, never an invalid token."""
    tokens = PageTokens(b"k" * 32)
    assert tokens.page_request(limit=0, token="", binding=BINDING) == PageRequest(
        limit=50, after=None
    )


def test_token_signed_by_another_secret_is_invalid() -> None:
    token = PageTokens(b"a" * 32).encode(("n", "i"), binding=BINDING)
    with pytest.raises(InvalidArgument) as err:
        PageTokens(b"b" * 32).decode(token, binding=BINDING)
    assert err.value.reason == "INVALID_PAGE_TOKEN"


def test_token_bound_to_its_filters() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(("n", "i"), binding=BINDING)
    with pytest.raises(InvalidArgument) as err:
        tokens.decode(token, binding={**BINDING, "enabled": True})
    assert err.value.reason == "PAGE_TOKEN_MISMATCH"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PageTokens(b"short")
