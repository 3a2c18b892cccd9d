"""Job endings: how an engine that owns jobs learns that they finished (issue 10).

Engines built on jobs (pack runs, the Orchestra process engine's service tasks) park
an item until a job it owns reaches a terminal state: `succeeded`, `dead_lettered`
or `canceled` (`job_states.FINISHED`; a `failed` job with a retry pending is not an
ending, its retry is still to come).

Ownership is two columns of `jobs`, set at enqueue and never changed:

- `pack_run_id`: the job belongs to a pack run (`domain/pack_runs.py`);
- `owner`: any other engine's waiting item, as `"{engine}/{id}"` (e.g.
  `"orchestra-tokens/{tokenId}"`); the engine picks the prefix and filters on it.

Only jobs with either column set are announced; a job with neither (the common case)
costs the completion path nothing beyond returning two NULL columns.

Contract.

- **A hint, at least once, at most "soon".** After the commit that ended an owned
  job (complete, fail to dead letter, lease expiry to dead letter, cancel: both
  `storage/repositories/leases.py` and a unit of work's `jobs.cancel`), this
  process's `JobEndings.publish` calls every subscribed listener with the endings
  of that commit. Listeners run synchronously in the committing task, so they must
  not block or await: set an `asyncio.Event`, put into a queue, note an id. An
  exception in a listener is logged and swallowed; the job's ending stands.
- **Not durable and not cross-process.** A crash between the commit and the call, a
  job ended by another replica, or a listener that subscribed late sees nothing.
  Other code paths that end jobs (a future one forgetting `publish`) also fall back
  to the loop below. So every engine MUST also **reconcile from durable state**: a
  background loop (every few seconds, and at once when a hint arrives) that reads
  its parked items whose job is in a terminal status, with an indexed query (e.g.
  its own table's `(status)` index joined to `jobs` by primary key; the jobs table
  has partial indexes `ix_jobs_pack_run` and `ix_jobs_owner` on the two columns),
  and advances each with a **conditional update** (`UPDATE .. WHERE item_id = :id
  AND state = 'waiting'`): the replica whose update changed the row does the
  follow-up work in the same transaction, every other replica (or a repeated hint)
  changes nothing. That makes the follow-up exactly once across replicas and
  restarts, whatever the hints did.
- **Ids, not rows.** A `JobEnding` says which job ended and how; read anything else
  (result, last error) from the job. A replayed clone of an owned job keeps its
  owner columns, so an engine must match endings to the job ids it tracks, not
  to the owner alone.

Subscribing (e.g. in an engine's `start()`):

    unsubscribe = store.endings.subscribe(lambda endings: wake.set())
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("orchestrator.job_endings")

JobEndingListener = Callable[[Sequence["JobEnding"]], None]


@dataclass(frozen=True, slots=True)
class JobEnding:
    """One owned job that reached a terminal status (`succeeded`, `dead_lettered` or
    `canceled`); `pack_run_id` and `owner` are the job's ownership columns."""

    tenant_id: str
    job_id: str
    status: str
    pack_run_id: str | None
    owner: str | None


def owned(pack_run_id: str | None, owner: str | None) -> bool:
    """Whether a job with these columns is announced when it ends."""
    return pack_run_id is not None or owner is not None


class JobEndings:
    """The process's hub of job-ending hints (see the module's contract)."""

    def __init__(self) -> None:
        self._listeners: list[JobEndingListener] = []

    @property
    def listening(self) -> bool:
        """Whether anyone subscribed: writers skip building endings when no one did."""
        return bool(self._listeners)

    def subscribe(self, listener: JobEndingListener) -> Callable[[], None]:
        """Call `listener` with the endings of each commit that ended owned jobs, from
        now on; returns the function that unsubscribes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, endings: Sequence[JobEnding]) -> None:
        """Hand `endings` (already committed) to every listener; called by the writers
        after their commit. Empty sequences are not passed on."""
        if not endings:
            return
        for listener in tuple(self._listeners):
            try:
                listener(endings)
            except Exception:  # a hint: the ending is committed whatever a listener does
                log.exception("job-ending listener %r failed", listener)
