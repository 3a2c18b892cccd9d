from __future__ import annotations

import re

import pytest

from server.interceptors.tracing import resolve_trace_id

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("header", "traceparent", "expected"),
    [
        ("abc-123", None, "abc-123"),
        ("abc-123", PARENT, "abc-123"),
        (None, PARENT, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("", PARENT, "4bf92f3577b34da6a3ce929d0e0e4736"),
    ],
    ids=["header", "header-wins", "traceparent", "blank-header"],
)
def test_caller_ids_are_kept(header: str | None, traceparent: str | None, expected: str) -> None:
    assert resolve_trace_id(header, traceparent) == expected


@pytest.mark.parametrize(
    ("header", "traceparent"),
    [
        (None, None),
        ("has space", None),
        ("x" * 65, None),
        ("0" * 32, None),
        (None, "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        (None, "garbage"),
    ],
    ids=["absent", "space", "too-long", "zero-header", "zero-traceparent", "bad-traceparent"],
)
def test_unusable_ids_are_replaced(header: str | None, traceparent: str | None) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", resolve_trace_id(header, traceparent))
