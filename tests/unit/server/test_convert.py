from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from server.services.convert import timestamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(2026, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, 5, 0),
    ],
    ids=["utc-micros", "before-epoch", "offset", "naive-is-utc"],
)
def test_timestamp_matches_protobuf(value: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    assert timestamp(value) == expected
