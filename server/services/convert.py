"""Storage rows -> proto messages: the one place that sees both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from orchestrator.jobengine.v1 import audit_pb2, job_pb2, source_pb2
from server.domain.audit import AuditEntryLike
from server.domain.errors import InvalidArgument
from server.domain.events import EventLike
from server.domain.jobs import (
    FREE_JSON_DEPTH_MAX,
    FREE_JSON_TOO_DEEP,
    BackoffRequest,
    EnqueueRequest,
    JobRecord,
    json_depth,
)
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


def put_timestamp(field: timestamp_pb2.Timestamp, value: datetime) -> None:
    """Set `field` (a message's Timestamp field) to `value` in place: half the cost of
    assigning a new Timestamp, which protobuf copies into the parent."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    field.seconds = delta.days * 86400 + delta.seconds
    field.nanos = delta.microseconds * 1000


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


# --- jobs and events (issue 9) --------------------------------------------------------


def json_value(value: Any) -> struct_pb2.Value:
    """A JSON-ready Python value as a `google.protobuf.Value`."""
    message = struct_pb2.Value()
    put_value(message, value)
    return message


def put_value(message: struct_pb2.Value, value: Any) -> None:
    """Set `message` (a Value, possibly a field of another message) to a JSON-ready
    Python value in place."""
    if value is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, dict):
        message.struct_value.SetInParent()  # {} is a value too, not an unset field
        message.struct_value.update(value)
    else:
        message.list_value.SetInParent()
        message.list_value.extend(value)


def python_value(value: struct_pb2.Value) -> Any:
    """A `google.protobuf.Value` as a JSON-ready Python value (None for JSON null)."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: python_value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [python_value(item) for item in value.list_value.values]
    if kind in ("number_value", "string_value", "bool_value"):
        return getattr(value, kind)
    return None


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def _put_duration(field: duration_pb2.Duration, seconds: float) -> None:
    whole = int(seconds)
    field.seconds = whole
    field.nanos = round((seconds - whole) * 1e9)


def free_json(message: Message, *, field: str) -> Any:
    """A Struct, Value or ListValue as JSON values (a dict for a Struct). Raises
    InvalidArgument naming `field` for a NaN or an infinity (JSON has neither; over
    gRPC a double field may hold one, and json_format refused it with a ValueError:
    INTERNAL) or for arrays and objects nested deeper than FREE_JSON_DEPTH_MAX."""
    try:
        value = json_format.MessageToDict(message)
    except (json_format.SerializeToJsonError, ValueError):
        raise InvalidArgument.of(field, "must be JSON: NaN and infinities are not") from None
    if json_depth(value) > FREE_JSON_DEPTH_MAX:
        raise InvalidArgument.of(field, FREE_JSON_TOO_DEEP)
    return value


def seconds_of(value: duration_pb2.Duration, *, field: str) -> float:
    """A Duration in seconds. Raises InvalidArgument naming `field` when its nanos are
    outside -999,999,999..999,999,999 or their sign differs from the seconds'
    (google/protobuf/duration.proto); over gRPC nothing else checks that."""
    if abs(value.nanos) > 999_999_999 or (value.seconds * value.nanos < 0):
        raise InvalidArgument.of(
            field,
            "must be a valid Duration: nanos from -999999999 to 999999999 with the sign "
            f"of seconds, got seconds={value.seconds} nanos={value.nanos}",
        )
    return value.seconds + value.nanos / 1e9


def job(row: JobRecord, into: job_pb2.Job | None = None) -> job_pb2.Job:
    """A stored job as the API's `Job`, written into `into` (an empty `Job` field of
    another message) when given. `last_error` is stored as the JSON mapping of
    `JobError` (camelCase keys); unknown keys are ignored."""
    message = job_pb2.Job() if into is None else into
    message.job_id = row.job_id
    message.job_type = row.job_type
    message.source_id = row.source_id
    message.status = row.status
    message.priority = row.priority
    message.attempts = row.attempts
    message.max_attempts = row.max_attempts
    # Fields set in place, not as new messages protobuf would copy: a lease of 100 jobs
    # converts 100 of these (~8 -> ~5 µs each).
    put_timestamp(message.run_at, row.run_at)
    put_timestamp(message.created_at, row.created_at)
    put_timestamp(message.updated_at, row.updated_at)
    backoff = message.backoff
    _put_duration(backoff.initial_delay, row.backoff_initial_s)
    _put_duration(backoff.max_delay, row.backoff_max_s)
    backoff.multiplier = row.backoff_multiplier
    backoff.jitter = row.backoff_jitter
    if row.payload is not None:
        put_value(message.payload, json.loads(row.payload))
    if row.result is not None:
        put_value(message.result, json.loads(row.result))
    if row.next_eligible_at is not None:
        put_timestamp(message.next_eligible_at, row.next_eligible_at)
    if row.lease_expires_at is not None:
        put_timestamp(message.lease_expires_at, row.lease_expires_at)
    if row.last_error is not None:
        json_format.ParseDict(
            json.loads(row.last_error), message.last_error, ignore_unknown_fields=True
        )
    if row.idempotency_key is not None:
        message.idempotency_key = row.idempotency_key
    if row.replay_of is not None:
        message.replay_of = row.replay_of
    if row.pack_run_id is not None:
        message.pack_run_id = row.pack_run_id
    if row.event_time is not None:
        put_timestamp(message.event_time, row.event_time)
    return message


def job_event(row: EventLike) -> job_pb2.JobEvent:
    event = job_pb2.JobEvent(
        event_id=str(row.event_id),
        type=row.type,
        subject=row.subject,
        trace_id=row.trace_id or "",
        time=timestamp(row.time),
    )
    event.data.update(json.loads(row.data))
    return event


def enqueue_request(message: job_pb2.Job, *, field: str = "job") -> EnqueueRequest:
    """The domain's view of a `Job` to enqueue (output-only fields ignored). Raises
    InvalidArgument naming `job.runAt` (or `job.eventTime`) when it is outside RFC
    3339's range, `job.backoff.initialDelay` (or `maxDelay`) when it is no valid
    Duration; `field` is the job's place in the request instead of `job`."""
    backoff = None
    if message.HasField("backoff"):
        given = message.backoff
        backoff = BackoffRequest(
            initial_delay_s=(
                seconds_of(given.initial_delay, field=f"{field}.backoff.initialDelay")
                if given.HasField("initial_delay")
                else None
            ),
            max_delay_s=(
                seconds_of(given.max_delay, field=f"{field}.backoff.maxDelay")
                if given.HasField("max_delay")
                else None
            ),
            multiplier=given.multiplier,
            jitter=given.jitter if given.HasField("jitter") else None,
        )
    has_payload = message.HasField("payload")
    return EnqueueRequest(
        job_type=message.job_type,
        source_id=message.source_id,
        priority=message.priority,
        has_payload=has_payload,
        payload=python_value(message.payload) if has_payload else None,
        max_attempts=message.max_attempts,
        run_at=datetime_of(message.run_at, field=f"{field}.runAt")
        if message.HasField("run_at")
        else None,
        idempotency_key=(message.idempotency_key if message.HasField("idempotency_key") else None),
        pack_run_id=message.pack_run_id if message.HasField("pack_run_id") else None,
        backoff=backoff,
        event_time=datetime_of(message.event_time, field=f"{field}.eventTime")
        if message.HasField("event_time")
        else None,
    )
