"""Storage rows -> proto messages: the one place that sees both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from orchestrator.jobengine.v1 import audit_pb2, source_pb2
from server.domain.audit import AuditEntryLike
from server.domain.errors import InvalidArgument
from server.domain.sources import SourceLike

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01, 9999-12-31 (RFC 3339)
_MAX_MICROS = (_MAX_SECONDS + 1) * 1_000_000 - 1


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


def audit_entry(row: AuditEntryLike) -> audit_pb2.AuditEntry:
    entry = audit_pb2.AuditEntry(
        entry_id=row.entry_id,
        tenant_id=row.tenant_id or "",
        actor=row.actor,
        action=row.action,
        resource=row.resource,
        reason=row.reason,
        ticket=row.ticket,
        token_id=row.token_id,
        quota_reason=row.quota_reason,
        quota_ticket=row.quota_ticket,
        backfill_reason=row.backfill_reason,
        backfill_ticket=row.backfill_ticket,
        trace_id=row.trace_id,
        created_at=timestamp(row.created_at),
    )
    if row.before is not None:
        entry.before.update(json.loads(row.before))
    if row.after is not None:
        entry.after.update(json.loads(row.after))
    return entry


def datetime_of(value: timestamp_pb2.Timestamp, *, field: str) -> datetime:
    """A request Timestamp as an aware UTC datetime, rounded up to the microsecond that
    storage keeps: for `>= since` and `< until` alike, rounding up selects exactly the
    stored times the nanosecond bound would. Out of RFC 3339's range is the caller's
    mistake, named by `field` (gRPC callers can send any seconds)."""
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument.of(field, "must be a time between 0001-01-01 and 9999-12-31 UTC")
    micros = value.seconds * 1_000_000 - (-value.nanos // 1000)
    return _EPOCH + timedelta(microseconds=min(micros, _MAX_MICROS))
