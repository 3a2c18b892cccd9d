"""Resource types: what the domain names, audits and reports about each kind of resource.

A `ResourceType` is declared once per resource, next to its rules (e.g. `SOURCE` in
`domain/sources.py`; `QUOTA` and `JOB` below, shared by services built in parallel),
and everything that used to be spelled per call derives from it:
resource names `{collection}/{id}` (AIP-122), audit actions `{collection}.{verb}` and
before/after snapshots (`domain/audit.py`), and the NOT_FOUND / ALREADY_EXISTS errors
with reasons `{SINGULAR}_NOT_FOUND` / `{SINGULAR}_EXISTS` (`domain/errors.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ResourceType(Generic[R]):
    """One kind of resource, e.g. `ResourceType("source", "sources", "sourceId", ...)`.

    `singular` is the noun in messages ("source 'x' not found"); `collection` the
    AIP-122 collection id; `id_field` the JSON name of the id, which error metadata
    uses as its key; `id_of` reads a resource's id and `snapshot` gives the audited
    view of one (JSON-ready values, the API's field names)."""

    singular: str
    collection: str
    id_field: str
    id_of: Callable[[R], str]
    snapshot: Callable[[R], Mapping[str, Any]]

    @property
    def reason_prefix(self) -> str:
        """`singular` as an ErrorInfo reason prefix: "dead-letter entry" -> DEAD_LETTER_ENTRY."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.singular).strip("_").upper()

    def name(self, resource_id: str) -> str:
        """The resource name `{collection}/{id}` (AIP-122), as audit entries record it."""
        return f"{self.collection}/{resource_id}"


# --- the resources of the job engine (issue 9), declared here so that the quota and
# job services, built side by side, share one name, id field and audited view ---------


class QuotaLike(Protocol):
    """A quota as read: a storage row or the domain's value, with these attributes."""

    @property
    def quota_id(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def max_active(self) -> int: ...
    @property
    def max_per_hour(self) -> int: ...
    @property
    def burst(self) -> int: ...
    @property
    def refill_per_second(self) -> float: ...
    @property
    def paused(self) -> bool: ...
    @property
    def pause_reason(self) -> str | None: ...


def quota_snapshot(quota: QuotaLike) -> Mapping[str, Any]:
    """The audited view of a quota: its settings and pause state, never its usage
    (which changes with every lease and is no operator's doing)."""
    return {
        "quotaId": quota.quota_id,
        "jobType": quota.job_type,
        "maxActive": quota.max_active,
        "maxPerHour": quota.max_per_hour,
        "burst": quota.burst,
        "refillPerSecond": quota.refill_per_second,
        "paused": quota.paused,
        "pauseReason": quota.pause_reason,
    }


QUOTA: ResourceType[QuotaLike] = ResourceType(
    singular="quota",
    collection="quotas",
    id_field="quotaId",
    id_of=lambda quota: quota.quota_id,
    snapshot=quota_snapshot,
)


class JobLike(Protocol):
    """A job as read: a storage row or the domain's value, with these attributes."""

    @property
    def job_id(self) -> str: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def job_type(self) -> str: ...
    @property
    def source_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def replay_of(self) -> str | None: ...
    @property
    def pack_run_id(self) -> str | None: ...


def job_snapshot(job: JobLike) -> Mapping[str, Any]:
    """The audited view of a job: what identifies it and its state, not its payload
    (up to the size cap, possibly sensitive, and kept on the job itself)."""
    return {
        "jobId": job.job_id,
        "jobType": job.job_type,
        "sourceId": job.source_id,
        "status": job.status,
        "priority": job.priority,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "idempotencyKey": job.idempotency_key,
        "replayOf": job.replay_of,
        "packRunId": job.pack_run_id,
        "projectId": job.project_id,
    }


JOB: ResourceType[JobLike] = ResourceType(
    singular="job",
    collection="jobs",
    id_field="jobId",
    id_of=lambda job: job.job_id,
    snapshot=job_snapshot,
)
