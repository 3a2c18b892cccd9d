"""The job state machine as a table: every allowed transition, and refusals."""

from __future__ import annotations

import pytest

from server.domain.errors import FailedPrecondition
from server.domain.job_states import (
    EVENT_TYPES,
    FINISHED,
    INITIAL,
    TRANSITIONS,
    WAITING,
    JobAction,
    JobStatus,
    sources,
    transition,
)
from server.storage.tables import JOBS_READY_PREDICATE, READY_STATUSES

Q, T, L, S, F, C, D = (
    JobStatus.QUEUED,
    JobStatus.THROTTLED,
    JobStatus.LEASED,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
    JobStatus.DEAD_LETTERED,
)

# The documented table (module docstring, job.proto), spelled out once more.
EXPECTED = {
    (Q, JobAction.LEASE): L,
    (T, JobAction.LEASE): L,
    (F, JobAction.LEASE): L,
    (Q, JobAction.THROTTLE): T,
    (T, JobAction.THROTTLE): T,
    (F, JobAction.THROTTLE): T,
    (Q, JobAction.CANCEL): C,
    (T, JobAction.CANCEL): C,
    (F, JobAction.CANCEL): C,
    (L, JobAction.COMPLETE): S,
    (L, JobAction.FAIL): F,
    (L, JobAction.DEAD_LETTER): D,
    (L, JobAction.EXPIRE): Q,
    (L, JobAction.EXPIRE_FINAL): D,
    (L, JobAction.CANCEL): C,
}


def test_the_table_is_the_documented_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("start", "action"), sorted(EXPECTED))
def test_each_allowed_transition_lands_where_documented(
    start: JobStatus, action: JobAction
) -> None:
    assert transition(start, action) is EXPECTED[(start, action)]
    assert transition(start.value, action) is EXPECTED[(start, action)]


@pytest.mark.parametrize(
    ("start", "action"),
    sorted((s, a) for s in JobStatus for a in JobAction if (s, a) not in EXPECTED),
)
def test_every_other_pair_is_a_failed_precondition(start: JobStatus, action: JobAction) -> None:
    with pytest.raises(FailedPrecondition) as err:
        transition(start, action)
    assert err.value.reason == "JOB_STATUS_CONFLICT"
    assert dict(err.value.metadata) == {"status": start.value, "action": action.value}


def test_the_message_names_the_status_and_the_action() -> None:
    with pytest.raises(FailedPrecondition) as err:
        transition(S, JobAction.DEAD_LETTER)
    assert str(err.value) == "job is succeeded; cannot dead letter it"


def test_finished_jobs_never_move_and_every_status_is_reachable() -> None:
    assert {s for s, _ in TRANSITIONS} & FINISHED == set()
    assert set(TRANSITIONS.values()) == set(JobStatus)
    assert FINISHED | WAITING | {L} == set(JobStatus)
    assert {Q, T} == INITIAL


def test_sources_are_the_guards_of_each_action() -> None:
    assert sources(JobAction.LEASE) == WAITING
    assert sources(JobAction.CANCEL) == WAITING | {L}
    assert sources(JobAction.COMPLETE) == {L}
    assert sources(JobAction.ENQUEUE) == frozenset()


def test_the_waiting_set_is_the_storage_ready_set() -> None:
    assert set(READY_STATUSES) == {s.value for s in WAITING}
    assert JOBS_READY_PREDICATE == "status IN ('queued', 'throttled', 'failed')"


def test_an_unknown_status_is_a_bug_not_a_conflict() -> None:
    with pytest.raises(ValueError, match="'running' is not a valid JobStatus"):
        transition("running", JobAction.LEASE)


def test_every_action_writes_an_event() -> None:
    assert set(EVENT_TYPES) == set(JobAction)
    assert EVENT_TYPES[JobAction.EXPIRE] == EVENT_TYPES[JobAction.EXPIRE_FINAL]
