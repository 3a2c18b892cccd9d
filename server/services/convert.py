"""Storage rows -> proto messages: the one place that sees both."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from orchestrator.jobengine.v1 import source_pb2
from server.domain.sources import SourceLike

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """SQLite hands back naive datetimes; every stored time is UTC.

    Computed from the timedelta directly: `Timestamp.FromDatetime` costs ~6x more,
    and list pages convert two timestamps per item.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def source(row: SourceLike) -> source_pb2.Source:
    return source_pb2.Source(
        source_id=row.source_id,
        name=row.name,
        source_type=row.source_type,
        enabled=row.enabled,
        paused=row.paused,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )
