"""The job state machine (DESIGN §9, issue 9): statuses, actions and the one table of
transitions between them, as data.

A job waits (`queued`, `throttled` by its quota, or `failed` awaiting its retry),
is `leased` by a worker, and finishes `succeeded`, `canceled` or `dead_lettered`.
Every transition is an event (`EVENT_TYPES`) written in the transaction of the
change. Storage guards its updates with `WHERE status IN sources(action)`, so a row
that moved meanwhile is not touched; `transition` checks one job in Python and
raises the domain error the API answers.

| from | action | to | when |
|---|---|---|---|
| (new) | enqueue | queued | its quota allows it (or it has none) |
| (new) | enqueue | throttled | its quota is exhausted: delayed |
| queued, throttled, failed | lease | leased | eligible, within quota; attempts += 1 |
| queued, throttled, failed | throttle | throttled | over quota at lease time: delayed again |
| queued, throttled, failed | cancel | canceled | an operator cancels it |
| leased | complete | succeeded | valid fencing token |
| leased | fail | failed | retryable, attempts left: backoff |
| leased | dead_letter | dead_lettered | non-retryable, or attempts exhausted |
| leased | expire | queued | lease expired, attempts left |
| leased | expire_final | dead_lettered | lease expired, attempts exhausted |
| leased | cancel | canceled | the worker learns it at its heartbeat |

Canceling a canceled job is not a transition: the API answers it unchanged.
Finished jobs are not changed again; `ReplayJob` enqueues a new job instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from server.domain.errors import FailedPrecondition


class JobStatus(StrEnum):
    """A job's status, spelled as the API's `status` field (lower case)."""

    QUEUED = "queued"
    THROTTLED = "throttled"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    DEAD_LETTERED = "dead_lettered"


class JobAction(StrEnum):
    """What moves a job from one status to another."""

    ENQUEUE = "enqueue"
    LEASE = "lease"
    THROTTLE = "throttle"
    COMPLETE = "complete"
    FAIL = "fail"
    DEAD_LETTER = "dead_letter"
    EXPIRE = "expire"
    EXPIRE_FINAL = "expire_final"
    CANCEL = "cancel"


# Waiting to be leased from next_eligible_at on: the lease query's (and the partial
# index's) status set, server/storage/tables.py READY_STATUSES.
WAITING: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.THROTTLED, JobStatus.FAILED})
# Never changed again; finished_at is set on entering one, and pruning removes them.
FINISHED: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.CANCELED, JobStatus.DEAD_LETTERED}
)
# What a new job may start as.
INITIAL: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.THROTTLED})


def _from_waiting(action: JobAction, to: JobStatus) -> dict[tuple[JobStatus, JobAction], JobStatus]:
    return {(status, action): to for status in WAITING}


TRANSITIONS: Mapping[tuple[JobStatus, JobAction], JobStatus] = {
    **_from_waiting(JobAction.LEASE, JobStatus.LEASED),
    **_from_waiting(JobAction.THROTTLE, JobStatus.THROTTLED),
    **_from_waiting(JobAction.CANCEL, JobStatus.CANCELED),
    (JobStatus.LEASED, JobAction.COMPLETE): JobStatus.SUCCEEDED,
    (JobStatus.LEASED, JobAction.FAIL): JobStatus.FAILED,
    (JobStatus.LEASED, JobAction.DEAD_LETTER): JobStatus.DEAD_LETTERED,
    (JobStatus.LEASED, JobAction.EXPIRE): JobStatus.QUEUED,
    (JobStatus.LEASED, JobAction.EXPIRE_FINAL): JobStatus.DEAD_LETTERED,
    (JobStatus.LEASED, JobAction.CANCEL): JobStatus.CANCELED,
}

# The event type each action writes (DESIGN §9 events table, `type`); an enqueue
# writes job.enqueued whether it starts queued or throttled, a throttled start
# also job.throttled.
EVENT_TYPES: Mapping[JobAction, str] = {
    JobAction.ENQUEUE: "job.enqueued",
    JobAction.LEASE: "job.leased",
    JobAction.THROTTLE: "job.throttled",
    JobAction.COMPLETE: "job.succeeded",
    JobAction.FAIL: "job.failed",
    JobAction.DEAD_LETTER: "job.dead_lettered",
    JobAction.EXPIRE: "job.lease_expired",
    JobAction.EXPIRE_FINAL: "job.lease_expired",
    JobAction.CANCEL: "job.canceled",
}
# Written on the original job when ReplayJob clones it (not a transition).
REPLAYED_EVENT = "job.replayed"

REASON = "JOB_STATUS_CONFLICT"


def sources(action: JobAction) -> frozenset[JobStatus]:
    """The statuses `action` applies to: the `WHERE status IN (...)` guard of the
    storage statement that performs it (empty for ENQUEUE, which creates a job)."""
    return frozenset(status for status, act in TRANSITIONS if act is action)


def transition(status: JobStatus | str, action: JobAction) -> JobStatus:
    """The status `action` moves a job in `status` to.

    Raises FailedPrecondition (reason JOB_STATUS_CONFLICT, metadata `status` and
    `action`) when the table has no such transition, e.g. completing a job that is
    not leased or canceling a succeeded one (AIP-193: the request is valid but the
    resource is not in a state that allows it); ValueError for a status that is not
    a JobStatus (a storage bug, not the caller's).
    """
    current = JobStatus(status)
    target = TRANSITIONS.get((current, action))
    if target is None:
        raise FailedPrecondition(
            f"job is {current.value}; cannot {action.value.replace('_', ' ')} it",
            reason=REASON,
            metadata={"status": current.value, "action": action.value},
        )
    return target
