"""Cross-service jobs (seed 002, issue 13 point 5): `POST /jobs/recalc-quality` and
`POST /jobs/notify-consolidation` enqueue one JobEngine job each.

The request is checked here, naming its fields as the mesh API's JSON does
(snake_case, AIP-193 field paths such as `document_ids[2]`); then the job goes
through the jobs domain's own enqueue (`jobs.enqueue_job`: idempotency, quota
throttling, the `job.enqueued` event and the audit entry in one transaction, the
workers' wake-up after it) into the tenant's built-in "mesh" source
(`builtin_sources.py`).

Payloads (what a worker or the notification delivery reads; every key present):

- `quality.recalc`: `{"scope": str, "document_ids": [str], "correlation_id": str}`
- `notify.consolidation`: `{"scope": str, "document_ids": [str], "message": str,
  "channels": [str], "correlation_id": str}`

Only what the caller sent, nothing per call (no trace id, no time): the payload is in
the job's request hash, so a repeated idempotency key with the same body answers the
first job. The call's trace id is on the job's events.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from gateway.text import has_control
from server.domain import jobs
from server.domain.builtin_sources import builtin_source
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, Violation

if TYPE_CHECKING:
    from server.domain.units import Store

QUALITY_RECALC: Final = "quality.recalc"
NOTIFY_CONSOLIDATION: Final = "notify.consolidation"

SCOPE_MAX: Final = 1000
DOCUMENT_IDS_MAX: Final = 200
DOCUMENT_ID_MAX: Final = 200
CORRELATION_ID_MAX: Final = 200
MESSAGE_MAX: Final = 2000
CHANNELS_MAX: Final = 20
CHANNEL_PATTERN: Final = r"^[a-z][a-z0-9._-]{0,63}$"
_CHANNEL = re.compile(CHANNEL_PATTERN)
# A message may span lines: every RFC 5234 CTL but HT, LF and CR is refused.
_MESSAGE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The jobs domain's names for what this API calls otherwise (its violations say "job.x").
_JOB_FIELDS: Final = {
    "job.priority": "priority",
    "job.idempotencyKey": "idempotency_key",
    "job.payload": "request",
}


@dataclass(frozen=True, slots=True)
class RecalcQuality:
    """A `POST /jobs/recalc-quality` body; "" and () mean "not given"."""

    scope: str = ""
    document_ids: tuple[str, ...] = ()
    correlation_id: str = ""
    idempotency_key: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class NotifyConsolidation:
    """A `POST /jobs/notify-consolidation` body; "" and () mean "not given"."""

    scope: str = ""
    document_ids: tuple[str, ...] = ()
    message: str = ""
    channels: tuple[str, ...] = ()
    correlation_id: str = ""
    idempotency_key: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """The job a call enqueued (`created`) or found by its idempotency key, and the
    built-in source it belongs to."""

    job: jobs.JobRecord
    created: bool
    source_id: str


async def recalc_quality(
    store: Store,
    call: CallContext,
    request: RecalcQuality,
    limits: jobs.JobLimits,
    *,
    now: datetime,
) -> Accepted:
    """Enqueue a `quality.recalc` job. Raises InvalidArgument (every bad field),
    FailedPrecondition (SOURCE_PAUSED, SOURCE_DISABLED: the mesh source),
    AlreadyExists (JOB_EXISTS: the idempotency key was used with another body)."""
    violations = _common(request.scope, request.document_ids, request.correlation_id)
    violations += _job_options(request.idempotency_key, request.priority)
    if violations:
        raise InvalidArgument.from_violations(violations)
    payload = {
        "scope": request.scope,
        "document_ids": list(request.document_ids),
        "correlation_id": request.correlation_id,
    }
    return await _enqueue(
        store, call, QUALITY_RECALC, payload, request.idempotency_key, request.priority, limits, now
    )


async def notify_consolidation(
    store: Store,
    call: CallContext,
    request: NotifyConsolidation,
    limits: jobs.JobLimits,
    *,
    now: datetime,
) -> Accepted:
    """Enqueue a `notify.consolidation` job. Raises as `recalc_quality`, and
    InvalidArgument for a bad message or channel."""
    violations = _common(request.scope, request.document_ids, request.correlation_id)
    if len(request.message) > MESSAGE_MAX:
        violations.append(Violation("message", f"must be at most {MESSAGE_MAX} characters"))
    elif _MESSAGE_CONTROL.search(request.message):
        violations.append(
            Violation("message", "must not contain control characters other than line breaks")
        )
    violations += _channels(request.channels)
    violations += _job_options(request.idempotency_key, request.priority)
    if violations:
        raise InvalidArgument.from_violations(violations)
    payload = {
        "scope": request.scope,
        "document_ids": list(request.document_ids),
        "message": request.message,
        "channels": list(request.channels),
        "correlation_id": request.correlation_id,
    }
    return await _enqueue(
        store,
        call,
        NOTIFY_CONSOLIDATION,
        payload,
        request.idempotency_key,
        request.priority,
        limits,
        now,
    )


async def _enqueue(
    store: Store,
    call: CallContext,
    job_type: str,
    payload: dict[str, Any],
    idempotency_key: str,
    priority: int,
    limits: jobs.JobLimits,
    now: datetime,
) -> Accepted:
    source_id = await builtin_source(store, call, now=now)
    request = jobs.EnqueueRequest(
        job_type=job_type,
        source_id=source_id,
        priority=priority,
        has_payload=True,
        payload=payload,
        idempotency_key=idempotency_key or None,
    )
    try:
        enqueued = await jobs.enqueue_job(store, call, request, limits, now=now)
    except InvalidArgument as error:  # the payload cap (JOB_PAYLOAD_MAX_BYTES)
        raise InvalidArgument.from_violations(
            [Violation(_JOB_FIELDS.get(v.field, v.field), v.description) for v in error.violations]
        ) from None
    return Accepted(job=enqueued.job, created=enqueued.created, source_id=source_id)


def _text(field: str, value: str, maximum: int) -> Violation | None:
    if len(value) > maximum:
        return Violation(field, f"must be at most {maximum} characters")
    if value and not value.strip():
        return Violation(field, "must not be blank")
    if has_control(value):
        return Violation(field, "must not contain control characters")
    return None


def _common(scope: str, document_ids: Sequence[str], correlation_id: str) -> list[Violation]:
    violations = [
        bad
        for bad in (
            _text("scope", scope, SCOPE_MAX),
            _text("correlation_id", correlation_id, CORRELATION_ID_MAX),
        )
        if bad is not None
    ]
    if len(document_ids) > DOCUMENT_IDS_MAX:
        violations.append(
            Violation(
                "document_ids",
                f"must hold at most {DOCUMENT_IDS_MAX} ids, got {len(document_ids)}",
            )
        )
        return violations
    for index, document_id in enumerate(document_ids):
        field = f"document_ids[{index}]"
        if not document_id:
            violations.append(Violation(field, "must not be empty"))
        elif (bad := _text(field, document_id, DOCUMENT_ID_MAX)) is not None:
            violations.append(bad)
    return violations


def _channels(channels: Sequence[str]) -> list[Violation]:
    if len(channels) > CHANNELS_MAX:
        return [Violation("channels", f"must hold at most {CHANNELS_MAX}, got {len(channels)}")]
    violations: list[Violation] = []
    seen: set[str] = set()
    for index, channel in enumerate(channels):
        field = f"channels[{index}]"
        if not _CHANNEL.fullmatch(channel):
            violations.append(
                Violation(
                    field,
                    "must be a lowercase slug: a letter, then up to 63 letters, digits, '.', '_'"
                    f" or '-', got {channel[:80]!r}",
                )
            )
        elif channel in seen:
            violations.append(Violation(field, f"names {channel!r} twice"))
        seen.add(channel)
    return violations


def _job_options(idempotency_key: str, priority: int) -> list[Violation]:
    violations: list[Violation] = []
    if not jobs.PRIORITY_MIN <= priority <= jobs.PRIORITY_MAX:
        violations.append(
            Violation(
                "priority",
                f"must be between {jobs.PRIORITY_MIN} and {jobs.PRIORITY_MAX}, got {priority}",
            )
        )
    if idempotency_key and (
        bad := _text("idempotency_key", idempotency_key, jobs.IDEMPOTENCY_KEY_MAX)
    ):
        violations.append(bad)
    return violations
