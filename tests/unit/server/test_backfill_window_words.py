"""A backfill window's length in the words of its refusal (server/domain/backfills.py
`_span`): days, hours, minutes and seconds, the parts that are not zero, never a float
in exponent form (the refusal once said `2.6784e+06s` for 31 days)."""

from __future__ import annotations

import pytest

from server.domain.backfills import _span


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (31 * 86_400.0, "31 days"),
        (86_400.0, "1 day"),
        (93_784.0, "1 day 2 h 3 min 4 s"),
        (3_600.0, "1 h"),
        (90.5, "1 min 30.5 s"),
        (0.25, "0.25 s"),
        (0.0, "0 s"),
        (31 * 86_400.0 + 0.000001, "31 days 0.000001 s"),  # just over: shown
    ],
)
def test_span_words(seconds: float, words: str) -> None:
    assert _span(seconds) == words
