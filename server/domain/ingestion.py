"""Ingestion requests (seed 002 `POST /ingest`; issue 13 point 1): one JobEngine job of
type `ingest.<source>` per request.

The request names no source of the job engine, so the job goes to the tenant's
built-in "mesh" source (`domain/builtin_sources.py`), created on first use. The job's
payload is `{source, scope, correlation_id, trace_id}` (the seed's snake_case names),
so a worker has everything the caller sent plus the trace the job's events carry. The
enqueue is the job engine's own (`jobs.enqueue_job`): validation, quota throttling,
events and the audit entry ("jobs.ingest", resource `jobs/{jobId}`) in its unit of
work, and the wake-up of waiting workers after the commit.

Errors: InvalidArgument naming `source` (missing, or not a known source: the message
lists them), `scope` or `correlation_id` (too long, control characters), every bad
field at once; the job engine's FailedPrecondition when an operator paused or
disabled the mesh source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from gateway.text import has_control
from server.domain import jobs
from server.domain.builtin_sources import builtin_source
from server.domain.context import CallContext
from server.domain.errors import InvalidArgument, Violation, shown
from server.domain.jobs import EnqueueRequest, JobLimits, JobRecord

if TYPE_CHECKING:
    from server.domain.units import Store

# The agents seed 002 coordinates ("GitHub, Jira, Confluence, Swagger").
KNOWN_SOURCES: Final = ("github", "jira", "confluence", "swagger")
JOB_TYPE_PREFIX: Final = "ingest."
ANALYSIS_JOB_TYPE: Final = "analysis.consistency"  # the analysis after an ingestion run
SCOPE_MAX: Final = 1000  # characters
CORRELATION_ID_MAX: Final = 200  # characters


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """What the caller sent (JSON names `source`, `scope`, `correlation_id`)."""

    source: str
    scope: str = ""
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class Ingested:
    """The enqueued job and the trace id the call ran under."""

    job: JobRecord
    request: IngestRequest
    trace_id: str


def job_type_of(source: str) -> str:
    """The job type of an ingestion from `source`: `ingest.<source>`."""
    return f"{JOB_TYPE_PREFIX}{source}"


INGEST_JOB_TYPES: Final = tuple(job_type_of(source) for source in KNOWN_SOURCES)


def validate(request: IngestRequest) -> None:
    """Raise InvalidArgument naming every bad field (JSON names), or return."""
    known = ", ".join(KNOWN_SOURCES)
    violations: list[Violation] = []
    if not request.source:
        violations.append(Violation("source", f"is required: one of {known}"))
    elif request.source not in KNOWN_SOURCES:
        violations.append(
            Violation("source", f"unknown source {shown(request.source)}: must be one of {known}")
        )
    for name, value, most in (
        ("scope", request.scope, SCOPE_MAX),
        ("correlation_id", request.correlation_id, CORRELATION_ID_MAX),
    ):
        if len(value) > most:
            violations.append(
                Violation(name, f"must be at most {most} characters, got {len(value)}")
            )
        elif has_control(value):
            violations.append(Violation(name, "must not contain control characters"))
    if violations:
        raise InvalidArgument.from_violations(violations)


def payload_of(request: IngestRequest, trace_id: str) -> dict[str, str]:
    """The job's payload: the request and the trace id, with the seed's names."""
    return {
        "source": request.source,
        "scope": request.scope,
        "correlation_id": request.correlation_id,
        "trace_id": trace_id,
    }


class MeshSources:
    """The ids of the built-in mesh sources this process has resolved, by (tenant,
    project): sources are never deleted and the built-in one is found by name, so an
    id once resolved stays right, and an ingestion costs no extra transaction to look
    it up again (the enqueue checks the source's state, paused or disabled, itself).
    At most `capacity` entries; the oldest is dropped first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._ids: dict[tuple[str, str | None], str] = {}
        self._capacity = capacity

    async def source_id(self, store: Store, call: CallContext, *, now: datetime) -> str:
        key = (call.require_tenant(), call.project_id)
        found = self._ids.get(key)
        if found is None:
            found = await builtin_source(store, call, now=now)
            if len(self._ids) >= self._capacity:
                self._ids.pop(next(iter(self._ids)))
            self._ids[key] = found
        return found


async def ingest(
    store: Store,
    call: CallContext,
    request: IngestRequest,
    limits: JobLimits,
    *,
    now: datetime,
    sources: MeshSources | None = None,
) -> Ingested:
    """Validate `request` and enqueue its `ingest.<source>` job in the tenant's mesh
    source (module docstring; `sources` remembers its id between calls); the job as
    enqueued and the call's trace id. Nothing is written for a refused request
    (validation comes before the source is created)."""
    validate(request)
    if sources is None:
        source_id = await builtin_source(store, call, now=now)
    else:
        source_id = await sources.source_id(store, call, now=now)
    enqueued = await jobs.enqueue_job(
        store,
        call,
        EnqueueRequest(
            job_type=job_type_of(request.source),
            source_id=source_id,
            has_payload=True,
            payload=payload_of(request, call.trace_id),
        ),
        limits,
        now=now,
    )
    return Ingested(job=enqueued.job, request=request, trace_id=call.trace_id)
