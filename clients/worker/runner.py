"""`Worker`: runs an async handler for the jobs it leases from WorkerService.

One worker serves one tenant (the caller's headers, or the tenant its credentials
are bound to) and a list of job types, with at most `concurrency` handlers running
at once. It

- long-polls `LeaseJobs` for as many jobs as it has free slots (never more), waiting
  up to `wait_timeout` seconds per call;
- extends every held lease with one `Heartbeat` call each `heartbeat_ratio` of the
  lease duration (a third by default, so one lost heartbeat still leaves time); a
  heartbeat answering that a job was canceled, or that its lease is no longer ours,
  cancels that handler's task (`asyncio.CancelledError` inside the handler, and
  `job.canceled` true for a cancel) and reports nothing for it;
- reports results and failures in batches (`clients.worker.outcomes`): a handler's
  return value completes the job, `JobFailed` fails it as given, any other exception
  fails it as retryable ("handler", "UNHANDLED");
- drains on `drain()` (and on SIGTERM/SIGINT with `run(handle_signals=True)`): stops
  leasing at once, lets held jobs finish for up to `grace_period` seconds, fails the
  ones still running as retryable ("worker", "SHUTDOWN", so they run again without
  waiting for their lease to expire), sends every outcome, and returns;
- retries transient failures (server unavailable, `clients.worker.retry`) with
  backoff, and refreshes its `ClientCredentials` token before expiry.

A drain that cancels a `LeaseJobs` call in flight can lose a lease the server granted
in that same instant; such a job runs again once its lease expires (the expired
attempt counts), like the job of a worker that was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
from google.rpc import code_pb2

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.errors import ApiError
from clients.json_values import to_value
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.worker.job import Handler, JobFailed, LeasedJob
from clients.worker.outcomes import BATCH_SIZE, LINGER_SECONDS, CallError, Outcome, OutcomeBatcher
from clients.worker.retry import is_transient, retrying
from clients.worker.service import MAX_BATCH, WorkerServiceClient
from orchestrator.jobengine.v1 import worker_service_pb2 as pb

logger = logging.getLogger("clients.worker")

# LeaseJobs limits (worker_service.proto).
MAX_JOB_TYPES = 100
MAX_WAIT_SECONDS = 60.0
LEASE_SECONDS_RANGE = (1.0, 3600.0)
# How much longer than the long poll a gRPC call may take before its deadline.
DEADLINE_MARGIN_SECONDS = 15.0
# After the grace period, how long cancelled handlers get to unwind.
CANCEL_WAIT_SECONDS = 5.0
# Between empty answers when the wait timeout is (nearly) 0: polls, not a busy loop.
IDLE_PAUSE_SECONDS = 0.1


class _Stop(enum.Enum):
    CANCELED = "canceled"  # the job was canceled: report nothing
    LEASE_LOST = "lease lost"  # the lease is no longer ours: report nothing
    SHUTDOWN = "shutdown"  # the grace period ended: fail it as retryable


@dataclass(eq=False)
class _Held:
    job: LeasedJob
    task: asyncio.Task[None] | None = None
    stop: _Stop | None = None


class Worker:
    def __init__(
        self,
        transport: Transport,
        *,
        job_types: Sequence[str],
        handler: Handler,
        credentials: ClientCredentials | None = None,
        headers: CallerHeaders | None = None,
        worker_id: str | None = None,
        concurrency: int = 10,
        lease_duration: float = 30.0,
        wait_timeout: float = 20.0,
        heartbeat_ratio: float = 1 / 3,
        grace_period: float = 30.0,
        flush_interval: float = LINGER_SECONDS,
        batch_size: int = BATCH_SIZE,
        owns_transport: bool = False,
    ) -> None:
        """A worker over `transport` (gRPC or in-process; its timeout must exceed
        `wait_timeout`). `credentials` fetch and refresh the token (their scopes should
        include orch:operate); `headers.tenant` names the tenant for an operator client.
        Durations are seconds. `worker_id` defaults to host-pid-random. Raises
        ValueError for a limit outside the service's (worker_service.proto)."""
        if not 1 <= len(job_types) <= MAX_JOB_TYPES:
            raise ValueError(f"job_types must name 1 to {MAX_JOB_TYPES} job types")
        if not 1 <= concurrency <= MAX_BATCH:
            raise ValueError(f"concurrency must be between 1 and {MAX_BATCH}, got {concurrency}")
        low, high = LEASE_SECONDS_RANGE
        if not low <= lease_duration <= high:
            raise ValueError(f"lease_duration must be {low:g} to {high:g} s, got {lease_duration}")
        if not 0 <= wait_timeout <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_timeout must be 0 to {MAX_WAIT_SECONDS:g} s")
        if not 0 < heartbeat_ratio < 1:
            raise ValueError(f"heartbeat_ratio must be between 0 and 1, got {heartbeat_ratio}")
        if grace_period < 0:
            raise ValueError(f"grace_period must not be negative, got {grace_period}")
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.job_types = tuple(job_types)
        self.concurrency = concurrency
        self.lease_duration = lease_duration
        self.wait_timeout = wait_timeout
        self.heartbeat_interval = lease_duration * heartbeat_ratio
        self.grace_period = grace_period
        self._transport = transport
        self._owns_transport = owns_transport
        self._client = WorkerServiceClient(transport, headers, credentials=credentials)
        self._handler = handler
        self._outcomes = OutcomeBatcher(
            self._client,
            self.worker_id,
            self._settled,
            linger=flush_interval,
            max_batch=batch_size,
            retry_seconds=lease_duration,
        )
        self._held: dict[str, _Held] = {}  # by lease id: running, or reported but unsettled
        self._running = 0
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._started = False

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        job_types: Sequence[str],
        handler: Handler,
        credentials: ClientCredentials | None = None,
        headers: CallerHeaders | None = None,
        wait_timeout: float = 20.0,
        **options: Any,
    ) -> Worker:
        """A worker with its own gRPC channel to `target` ("host:port"), closed when
        `run` returns; `options` as for `Worker`."""
        transport = GrpcTransport(target, timeout=wait_timeout + DEADLINE_MARGIN_SECONDS)
        return cls(
            transport,
            job_types=job_types,
            handler=handler,
            credentials=credentials,
            headers=headers,
            wait_timeout=wait_timeout,
            owns_transport=True,
            **options,
        )

    @property
    def held_jobs(self) -> int:
        """Jobs leased and not yet settled (running, or reported and unanswered)."""
        return len(self._held)

    @property
    def draining(self) -> bool:
        return self._stopping.is_set()

    def drain(self) -> None:
        """Stop leasing, finish held jobs (within the grace period), report, and make
        `run` return. Safe to call more than once and from a signal handler."""
        if not self._stopping.is_set():
            logger.info("worker %s draining: no more leases", self.worker_id)
            self._stopping.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Lease and run jobs until `drain()` (or SIGTERM/SIGINT with `handle_signals`),
        then drain and return. Raises the `ApiError` that made leasing impossible (a
        refused credential, a missing scope, a bad request) after draining the jobs it
        held; transient failures are retried, never raised."""
        if self._started:
            raise RuntimeError("a Worker runs once")
        self._started = True
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.drain)
        flusher = asyncio.create_task(self._outcomes.run(), name="worker outcomes")
        beats = asyncio.create_task(self._heartbeats(), name="worker heartbeats")
        logger.info(
            "worker %s leasing %s (concurrency %d, lease %g s)",
            self.worker_id,
            ", ".join(self.job_types),
            self.concurrency,
            self.lease_duration,
        )
        fatal: CallError | None = None
        try:
            try:
                await self._lease_loop()
            except (ApiError, httpx.HTTPError) as exc:
                logger.error("worker %s cannot lease: %s", self.worker_id, exc)
                fatal = exc
                self._stopping.set()
            await self._finish_running()
            self._outcomes.close()
            await flusher
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._outcomes.close()
            # Handlers still run here when `run` itself was cancelled, or when one
            # ignored its cancellation after the grace period (`_finish_running` said
            # so): waiting for that one without a bound hung the drain for good.
            handlers = [h.task for h in self._held.values() if h.task is not None]
            for task in (flusher, beats, *handlers):
                task.cancel()
            await asyncio.gather(flusher, beats, return_exceptions=True)
            if handlers:
                await asyncio.wait(handlers, timeout=CANCEL_WAIT_SECONDS)
            if self._owns_transport:
                await self._transport.close()
        logger.info("worker %s stopped", self.worker_id)
        if fatal is not None:
            raise fatal

    # Leasing

    async def _lease_loop(self) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - self._running
            if free <= 0:
                self._slot_freed.clear()
                await _first(self._slot_freed, self._stopping)
                continue
            leases = await self._lease(free)
            for lease in leases:
                self._start(lease)
            if not leases and self.wait_timeout < IDLE_PAUSE_SECONDS:
                await self._pause(IDLE_PAUSE_SECONDS)  # no long poll: do not spin

    async def _lease(self, free: int) -> list[pb.Lease]:
        """Up to `free` leases; none once draining. Transient failures are retried
        with backoff (cut short by a drain); others raise."""
        async for attempt in retrying(
            "LeaseJobs", stop=lambda _: self._stopping.is_set(), sleep=self._pause
        ):
            with attempt:
                if self._stopping.is_set():
                    return []
                return await self._poll(free)
        return []

    async def _poll(self, free: int) -> list[pb.Lease]:
        poll = asyncio.create_task(
            self._client.lease_jobs(
                self.worker_id,
                self.job_types,
                free,
                wait_timeout=self.wait_timeout,
                lease_duration=self.lease_duration,
            )
        )
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not poll.done():
            poll.cancel()
            await asyncio.wait({poll})
            if poll.cancelled() or poll.exception() is not None:
                return []
        return poll.result()  # leases that raced the drain are run like any other

    async def _pause(self, seconds: float) -> None:
        """The backoff sleep, cut short by a drain."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # Running

    def _start(self, lease: pb.Lease) -> None:
        job = LeasedJob.from_lease(lease)
        held = _Held(job)
        self._held[job.token.lease_id] = held
        self._running += 1
        held.task = asyncio.create_task(self._run_handler(held), name=f"job {job.job_id}")
        logger.info(
            "leased job %s (type %s, attempt %d of %d)",
            job.job_id,
            job.job_type,
            job.attempt,
            job.max_attempts,
        )

    async def _run_handler(self, held: _Held) -> None:
        job = held.job
        try:
            try:
                result = await self._handler(job)
            except asyncio.CancelledError:
                if held.stop is not None:
                    self._stopped(held)
                    return
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this task cancelled from outside the worker (`run` was)
                # Raised by something the handler awaited (a task another job's
                # handler shared and someone cancelled), not by a cancel of this job:
                # re-raised, the job stayed held and heartbeated until the process
                # ended. It fails as any other handler error does.
                failure = JobFailed(
                    "handler", "UNHANDLED", "CancelledError: an awaited task was cancelled"
                )
                self._report(held, Outcome(job, failure=failure))
                return
            except JobFailed as failed:
                self._report(held, Outcome(job, failure=failed))
                return
            except Exception as exc:
                logger.warning("job %s: handler raised %r", job.job_id, exc, exc_info=True)
                failure = JobFailed("handler", "UNHANDLED", f"{type(exc).__name__}: {exc}")
                self._report(held, Outcome(job, failure=failure))
                return
            if held.stop is not None:  # the handler swallowed its cancellation
                self._stopped(held)
                return
            try:
                value = to_value(result)
            except (TypeError, ValueError) as exc:
                failure = JobFailed(
                    "handler",
                    "INVALID_RESULT",
                    f"the handler's result is not JSON: {exc}",
                    retryable=False,
                )
                self._report(held, Outcome(job, failure=failure))
                return
            self._report(held, Outcome(job, result=value))
        finally:
            self._running -= 1
            self._slot_freed.set()

    def _report(self, held: _Held, outcome: Outcome) -> None:
        if held.stop is not None:
            self._stopped(held)
            return
        self._outcomes.add(outcome)

    def _stopped(self, held: _Held) -> None:
        job = held.job
        if held.stop is _Stop.SHUTDOWN:
            failure = JobFailed(
                "worker",
                "SHUTDOWN",
                f"the worker stopped before the handler finished "
                f"(grace period {self.grace_period:g} s)",
            )
            self._outcomes.add(Outcome(job, failure=failure))
            return
        why = held.stop.value if held.stop is not None else "stopped"
        logger.info("job %s stopped: %s; nothing reported", job.job_id, why)

    async def _finish_running(self) -> None:
        """Let held handlers finish within the grace period; cancel the rest."""
        tasks = {h.task for h in self._held.values() if h.task is not None and not h.task.done()}
        if not tasks:
            return
        logger.info(
            "worker %s waiting up to %g s for %d running jobs",
            self.worker_id,
            self.grace_period,
            len(tasks),
        )
        _, late = await asyncio.wait(tasks, timeout=self.grace_period)
        if not late:
            return
        for held in self._held.values():
            if held.task in late and held.stop is None:
                held.stop = _Stop.SHUTDOWN
                held.task.cancel()
        _, stuck = await asyncio.wait(late, timeout=CANCEL_WAIT_SECONDS)
        for task in stuck:
            logger.error("%s ignores its cancellation; its lease will expire", task.get_name())

    # Settling (called by the batcher)

    def _settled(
        self, outcome: Outcome, result: pb.JobOutcome | None, error: CallError | None
    ) -> None:
        job = outcome.job
        self._held.pop(job.token.lease_id, None)
        failure = outcome.failure
        if result is None:
            logger.error("job %s: outcome not delivered: %s", job.job_id, error)
        elif result.status.code != code_pb2.OK:
            logger.warning(
                "job %s: %s refused: %s (the job was canceled or its lease lost)",
                job.job_id,
                "completion" if failure is None else "failure",
                result.status.message,
            )
        elif failure is None:
            logger.info("completed job %s (attempt %d)", job.job_id, job.attempt)
        else:
            retry = ""
            if result.HasField("next_eligible_at"):
                retry = f", retry at {result.next_eligible_at.ToDatetime(UTC).isoformat()}"
            logger.info(
                "failed job %s (attempt %d): %s/%s %s: %s -> %s%s",
                job.job_id,
                job.attempt,
                failure.category,
                failure.code,
                "retryable" if failure.retryable else "not retryable",
                failure.message,
                result.job_status,
                retry,
            )

    # Heartbeats

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            held = list(self._held.values())
            for start in range(0, len(held), MAX_BATCH):
                try:
                    await self._heartbeat(held[start : start + MAX_BATCH])
                except Exception:  # the next beat must still go: leases depend on it
                    logger.exception("heartbeat failed")

    async def _heartbeat(self, held: list[_Held]) -> None:
        tokens = [h.job.token for h in held]
        try:
            results = await self._client.heartbeat(
                self.worker_id, tokens, lease_duration=self.lease_duration
            )
        except (ApiError, httpx.HTTPError) as exc:
            level = logging.WARNING if is_transient(exc) else logging.ERROR
            logger.log(level, "heartbeat of %d leases failed: %s", len(tokens), exc)
            return
        for entry, result in zip(held, results, strict=True):
            if result.canceled or result.status.code == code_pb2.CANCELLED:
                entry.job.canceled = True
                self._stop(entry, _Stop.CANCELED)
            elif result.status.code == code_pb2.OK:
                entry.job.expires_at = result.expires_at.ToDatetime(UTC)
            else:
                logger.warning("job %s: lease lost: %s", entry.job.job_id, result.status.message)
                self._stop(entry, _Stop.LEASE_LOST)

    def _stop(self, held: _Held, why: _Stop) -> None:
        """Drop a job we may no longer finish; cancel its handler if it still runs."""
        self._held.pop(held.job.token.lease_id, None)
        if held.stop is not None:
            return
        held.stop = why
        if held.task is not None and not held.task.done():
            logger.info("job %s %s: cancelling its handler", held.job.job_id, why.value)
            held.task.cancel()


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
