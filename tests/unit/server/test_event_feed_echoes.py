"""The event feed's checks repeat a caller's text the way every other error does
(`errors.shown`): up to 200 characters, then "…" and the length; control
characters escaped, never raw."""

from __future__ import annotations

import pytest

from server.domain.errors import InvalidArgument
from server.domain.event_feed import MAX_EVENT_ID, parse_event_id, replay_range


def test_a_long_event_id_is_cut_with_its_length() -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_event_id("9" * 5_000, field="after")
    [violation] = refused.value.violations
    assert violation.field == "after"
    assert violation.description == (
        f"must be an event id: a decimal number from 0 to {MAX_EVENT_ID}, got"
        f" {'9' * 200 + '…'!r} (5000 characters)"
    )


def test_a_short_bad_event_id_is_repeated_whole_with_control_characters_escaped() -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_event_id("12\x0034", field="after")
    [violation] = refused.value.violations
    assert violation.description.endswith(", got '12\\x0034'")


def test_a_replay_range_names_its_own_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        replay_range("x" * 300, "5")
    assert refused.value.violations[0].field == "fromEventId"
    assert refused.value.violations[0].description.endswith(
        f"got {'x' * 200 + '…'!r} (300 characters)"
    )
