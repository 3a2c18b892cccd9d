"""Completions and failures sent in batches: `OutcomeBatcher`.

Finished attempts wait at most `linger` seconds (50 ms by default) or until
`max_batch` are waiting, then go as one CompleteJobs and one FailJobs call, so a busy
worker pays one round trip (and one server transaction) per batch, not per job.
A batch that fails with a transient error (`clients.worker.retry`) is sent again
with backoff for up to `retry_seconds`; after that the leases are gone anyway and
the server will retry the jobs. Per-item refusals are never retried: a stale fencing
token (FAILED_PRECONDITION) means the job was canceled or its lease was lost, and a
second try would be refused the same way. A completion refused as INVALID_ARGUMENT
(a result over the server's size cap) becomes a non-retryable failure of the job
instead, and a failure so refused (details over the cap) is sent again without its
details, so the job does not sit leased until its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx
from google.protobuf import struct_pb2
from google.rpc import code_pb2
from tenacity import stop_after_delay

from clients.errors import ApiError
from clients.worker.job import JobFailed, LeasedJob
from clients.worker.retry import retrying
from clients.worker.service import MAX_BATCH, WorkerServiceClient
from orchestrator.jobengine.v1 import worker_service_pb2 as pb

# What a whole call may fail with: the server's error, or the token endpoint unreachable.
CallError = ApiError | httpx.HTTPError

LINGER_SECONDS = 0.05
BATCH_SIZE = 100


@dataclass(frozen=True)
class Outcome:
    """One finished attempt to report: a completion (`result`) or a `failure`."""

    job: LeasedJob
    result: struct_pb2.Value | None = None
    failure: JobFailed | None = None


Settled = Callable[[Outcome, "pb.JobOutcome | None", "CallError | None"], None]
"""Told once per outcome: the server's answer for its item, or the error that made
the whole call fail (after retries)."""


class OutcomeBatcher:
    def __init__(
        self,
        client: WorkerServiceClient,
        worker_id: str,
        settled: Settled,
        *,
        linger: float = LINGER_SECONDS,
        max_batch: int = BATCH_SIZE,
        retry_seconds: float = 30.0,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}, got {max_batch}")
        if linger < 0:
            raise ValueError(f"linger must not be negative, got {linger}")
        self._client = client
        self._worker_id = worker_id
        self._settled = settled
        self._linger = linger
        self._max_batch = max_batch
        self._retry_seconds = retry_seconds
        self._pending: list[Outcome] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._closed = False

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._arrived.set()
        if len(self._pending) >= self._max_batch:
            self._full.set()

    def close(self) -> None:
        """No more outcomes: `run` sends what is waiting at once and returns."""
        self._closed = True
        self._arrived.set()
        self._full.set()

    async def run(self) -> None:
        """Send batches until `close`d and nothing is left."""
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(self._pending) < self._max_batch and not self._closed:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._send(batch)

    async def _send(self, batch: Sequence[Outcome]) -> None:
        completions = [o for o in batch if o.failure is None]
        failures = [o for o in batch if o.failure is not None]
        calls = []
        if completions:
            calls.append(self._send_completions(completions))
        if failures:
            calls.append(self._send_failures(failures))
        await asyncio.gather(*calls)

    async def _send_completions(self, batch: Sequence[Outcome]) -> None:
        items = [pb.JobCompletion(token=o.job.token, result=o.result) for o in batch]
        try:
            results = await self._with_retries(
                "CompleteJobs", lambda: self._client.complete_jobs(self._worker_id, items)
            )
        except (ApiError, httpx.HTTPError) as exc:
            for outcome in batch:
                self._settled(outcome, None, exc)
            return
        for outcome, result in zip(batch, results, strict=True):
            if result.status.code == code_pb2.INVALID_ARGUMENT:
                refused = JobFailed(
                    "handler",
                    "INVALID_RESULT",
                    f"the server refused the result: {result.status.message}",
                    retryable=False,
                )
                self.add(Outcome(outcome.job, failure=refused))
            else:
                self._settled(outcome, result, None)

    async def _send_failures(self, batch: Sequence[Outcome]) -> None:
        items = [o.failure.to_failure(o.job.token) for o in batch if o.failure is not None]
        try:
            results = await self._with_retries(
                "FailJobs", lambda: self._client.fail_jobs(self._worker_id, items)
            )
        except (ApiError, httpx.HTTPError) as exc:
            for outcome in batch:
                self._settled(outcome, None, exc)
            return
        for outcome, result in zip(batch, results, strict=True):
            failure = outcome.failure
            if (
                result.status.code == code_pb2.INVALID_ARGUMENT
                and failure is not None
                and failure.details is not None
            ):  # details over the server's cap: the failure still counts, without them
                self.add(Outcome(outcome.job, failure=failure.without_details(result.status)))
            else:
                self._settled(outcome, result, None)

    async def _with_retries(
        self, what: str, send: Callable[[], Awaitable[list[pb.JobOutcome]]]
    ) -> list[pb.JobOutcome]:
        async for attempt in retrying(
            what, stop=stop_after_delay(self._retry_seconds), sleep=asyncio.sleep
        ):
            with attempt:
                return await send()
        raise AssertionError("unreachable: tenacity reraises the last error")
