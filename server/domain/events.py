"""Events (DESIGN §9, issue 9 point 3): the append-only record of every state change.

An event is written in the unit of work of the change it records, so the change and
its event commit together or not at all. The shape is general on purpose (later
issues publish and stream these rows): `type` names what happened ("job.enqueued"),
`subject` the resource it happened to as its AIP-122 name ("jobs/{jobId}"), `data`
a JSON object of the details, `trace_id` the causing call's W3C trace id (None for
the server's own actions: the reaper, pruning). A resource's history is its
subject's events in `event_id` order.

Retention: a job's events are deleted with the job when finished jobs are pruned
(`domain/jobs.py`); what must outlive the job (who canceled it, who replayed it) is
in the operator audit trail, which is never pruned with jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from server.domain import job_states

# Every event type the server writes, by the module that writes it: what filters of
# `/infrastructure/events/*` accept (`domain/event_feed.py`); a filter naming another
# type is a caller's mistake (INVALID_ARGUMENT naming it), not an empty answer. A
# module that writes a new type adds it here.
EVENT_TYPES: frozenset[str] = frozenset(
    {
        *job_states.EVENT_TYPES.values(),
        job_states.REPLAYED_EVENT,
        "quota.created",  # domain/quotas.py
        "quota.updated",
        "quota.deleted",
        "quota.paused",
        "quota.resumed",
        "pack_run.created",  # domain/pack_runs.py EVENT_TYPE_NAMES
        "pack_run.job_started",
        "pack_run.job_finished",
        "pack_run.succeeded",
        "pack_run.failed",
        "pack_run.canceled",
        "pack_run.retried",
        "orchestra.instance.started",  # domain/orchestra/instances.py EVENT_TYPES
        "orchestra.instance.completed",
        "orchestra.instance.failed",
        "orchestra.instance.canceled",
        "orchestra.variables.set",
        "orchestra.token.entered",
        "orchestra.token.parked",
        "orchestra.token.waiting",
        "orchestra.token.signalled",
        "orchestra.token.timer_fired",
        "orchestra.token.job_ended",
        "orchestra.incident",
        "orchestra.instance.compensating",  # domain/orchestra/sagas.py EVENT_TYPES
        "orchestra.instance.compensated",
        "orchestra.compensation.started",
        "orchestra.compensation.completed",
        "orchestra.compensation.failed",
        "orchestra.compensation.canceled",
        "service.registered",  # domain/registry.py (platform-wide: no tenant)
        "service.updated",
        "service.replicated",
        "service.openapi_initial",
        "service.openapi_unchanged",
        "service.openapi_drifted",
        "service.openapi_failed",
        "peer.synced",
        "peer.sync_failed",
    }
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; `time` defaults to now (UTC). `data` must be JSON-ready."""

    tenant_id: str | None
    type: str
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    time: datetime = field(default_factory=_now)


class EventLike(Protocol):
    """An event as read: `event_id` increases in insertion order, `data` is the JSON
    text of an object."""

    @property
    def event_id(self) -> int: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> str: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def time(self) -> datetime: ...


class EventLog(Protocol):
    """The events side of a unit of work: append-only."""

    async def append(
        self,
        tenant_id: str | None,
        type: str,
        subject: str,
        data: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Append one event, timed now."""
        ...

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        """Append several events in one INSERT statement (a no-op for none)."""
        ...

    async def history(self, tenant_id: str, subject: str) -> Sequence[EventLike]:
        """`subject`'s events in the tenant, oldest first (event_id order)."""
        ...

    async def clear(
        self, *, tenant_id: str | None, older_than: datetime, keep_above: int | None
    ) -> tuple[int, int]:
        """Delete the events written before `older_than` (one tenant's, every tenant's
        for None) except those with `event_id > keep_above` (None: no such limit), in
        this unit of work: (deleted, kept because of `keep_above`). Issue 12's
        ClearEvents (`domain/event_feed.py`)."""
        ...


class EventReads(Protocol):
    async def history(self, tenant_id: str, subject: str) -> Sequence[EventLike]:
        """`subject`'s events in the tenant, oldest first (event_id order)."""
        ...
