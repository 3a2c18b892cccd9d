"""ISO 8601 durations of timer nodes (ISO 8601-1:2019 §5.5.2.4, the `PnDTnHnMnS` form).

Only units of fixed length are accepted: weeks, days, hours, minutes and seconds
(seconds may have a fraction). Years and months are refused, since their length
depends on the calendar date a timer starts on; so is anything over
`MAX_DURATION` or not above zero.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

MAX_DURATION: Final = timedelta(days=366)
_PATTERN = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d{1,6})?)S)?)?",
    re.ASCII,  # digits 0-9 only: `\d` alone also matches other scripts' digits (U+0665)
)
# A date part naming years or months (P1Y, P2M, P1Y2M3DT4H): well formed, refused.
_CALENDAR = re.compile(r"P(?=\d+[YM])(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T.*)?", re.ASCII)
_UNIT_SECONDS: Final = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60}
_DIGITS_MAX = 9  # more digits than this in one unit is over the maximum in any unit


class DurationError(ValueError):
    """Why a text is not an accepted duration, in words for an error message."""


def parse_duration(text: str) -> timedelta:
    """`PT5M` -> 5 minutes. Raises DurationError for anything else: other syntax, years
    or months, zero, or more than `MAX_DURATION`."""
    match = _PATTERN.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        if _CALENDAR.fullmatch(text):
            raise DurationError(
                f"{text!r}: years and months are not fixed lengths; use days (e.g. P30D)"
            )
        raise DurationError(
            f"{text!r} is not an ISO 8601 duration of weeks, days, hours, minutes and"
            " seconds (e.g. PT5M, P1DT2H, PT0.5S)"
        )
    parts = {name: value for name, value in match.groupdict().items() if value is not None}
    if any(len(value) > _DIGITS_MAX for value in parts.values()):
        raise DurationError(f"{text!r} is longer than the maximum of {MAX_DURATION.days} days")
    # Summed in seconds first: nine digits in each unit may add up to more than a
    # timedelta holds (P999999999W), which raised OverflowError (a 500).
    whole = sum(int(parts.get(unit, 0)) * size for unit, size in _UNIT_SECONDS.items())
    seconds = whole + float(parts.get("seconds", "0").replace(",", "."))
    if seconds <= 0:
        raise DurationError(f"{text!r} must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationError(f"{text!r} is longer than the maximum of {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)
