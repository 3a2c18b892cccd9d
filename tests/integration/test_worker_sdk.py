"""The worker SDK (`clients.worker.Worker`) and `examples/worker.py` against a real
server on loopback: results stored, failures retried then dead-lettered, cancellation
delivered to the handler, SIGTERM drain finishing the jobs in flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from clients.auth import ClientCredentials
from clients.base import CallerHeaders
from clients.jobs import JobsClient, new_job
from clients.json_values import from_value
from clients.sources import SourcesClient
from clients.transports.base import Transport
from clients.transports.grpc import GrpcTransport
from clients.transports.rest import RestTransport
from clients.worker import JobFailed, LeasedJob, Worker
from clients.worker.runner import CANCEL_WAIT_SECONDS
from orchestrator.jobengine.v1 import job_pb2
from orchestrator.jobengine.v1 import jobs_service_pb2 as jobs_pb
from server.app import Application
from tests.support.auth import TokenFactory

EXAMPLE = Path(__file__).parents[2] / "examples" / "worker.py"
# Retries at once: the n-th retry waits min(maxDelay, 0 * 2^(n-1)) = 0 s.
NO_BACKOFF = job_pb2.Backoff(
    initial_delay=duration_pb2.Duration(seconds=0), max_delay=duration_pb2.Duration(seconds=1)
)
WAIT_SECONDS = 20.0

# Tests with a worker wait in real time for heartbeats and long polls: short leases
# (a heartbeat every third of a second) and short polls keep them quick.
LEASE_SECONDS = 1.0
POLL_SECONDS = 0.5


@pytest.fixture
async def jobs(grpc_target: str, caller_headers: CallerHeaders) -> AsyncIterator[JobsClient]:
    transport = GrpcTransport(grpc_target)
    try:
        yield JobsClient(transport, caller_headers)
    finally:
        await transport.close()


@pytest.fixture
async def source_id(grpc_target: str, caller_headers: CallerHeaders) -> str:
    transport = GrpcTransport(grpc_target)
    try:
        source = await SourcesClient(transport, caller_headers).register_source("sdk", "manual")
    finally:
        await transport.close()
    return source.source_id


@pytest.fixture
async def credentials(tokens: TokenFactory, tenant: str, http_base: str) -> ClientCredentials:
    """A worker's client credentials: a client bound to the test's tenant."""
    created = await tokens.client(tenant)
    return ClientCredentials(
        token_url=f"{http_base}/oauth/token",
        client_id=created.client.client_id,
        client_secret=created.client_secret,
        scopes=["orch:operate"],
    )


def make_worker(
    grpc_target: str,
    credentials: ClientCredentials,
    job_type: str,
    handler: Callable[[LeasedJob], Awaitable[object]],
    *,
    concurrency: int = 1,
    grace_period: float = 10.0,
    lease_duration: float = LEASE_SECONDS,
) -> Worker:
    return Worker.connect(
        grpc_target,
        job_types=[job_type],
        handler=handler,
        credentials=credentials,
        concurrency=concurrency,
        lease_duration=lease_duration,
        wait_timeout=POLL_SECONDS,
        grace_period=grace_period,
    )


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """The worker running in the background; drained (and awaited) on the way out."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.drain()
        await asyncio.wait_for(task, WAIT_SECONDS)


async def enqueue(
    jobs: JobsClient,
    job_type: str,
    source_id: str,
    payload: object = None,
    *,
    max_attempts: int = 0,
    backoff: job_pb2.Backoff | None = None,
) -> str:
    job = new_job(job_type, source_id, payload=payload, max_attempts=max_attempts, backoff=backoff)
    response = await jobs.enqueue_job(job)
    assert response.created
    return response.job.job_id


async def settled(
    jobs: JobsClient, job_id: str, statuses: Sequence[str] = ("succeeded",)
) -> jobs_pb.GetJobResponse:
    """The job once its status is one of `statuses` (fails after WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        got = await jobs.get_job(job_id)
        if got.job.status in statuses:
            return got
        assert time.monotonic() < deadline, f"job {job_id} still {got.job.status}"
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def history(got: jobs_pb.GetJobResponse) -> list[str]:
    return [event.type for event in got.history]


async def test_the_jobs_client_on_every_transport(
    transport: Transport, caller_headers: CallerHeaders, source_id: str
) -> None:
    client = JobsClient(transport, caller_headers)
    batch = await client.batch_enqueue_jobs(
        [
            new_job("sdk.batch", source_id, payload={"n": n}, idempotency_key=f"k{n}")
            for n in range(3)
        ]
    )
    assert [(r.status.code, r.created) for r in batch.results] == [(0, True)] * 3
    ids = [r.job.job_id for r in batch.results]
    assert [from_value(r.job.payload) for r in batch.results] == [{"n": 0}, {"n": 1}, {"n": 2}]
    again = await client.enqueue_job(
        new_job("sdk.batch", source_id, payload={"n": 0}, idempotency_key="k0")
    )
    assert (again.job.job_id, again.job.status) == (ids[0], "queued")
    if not isinstance(transport, RestTransport):  # REST tells it by 200 instead of 201
        assert again.created is False
    pages = [page async for page in client.iter_jobs(job_type="sdk.batch", limit=2).pages()]
    assert [len(page.items) for page in pages] == [2, 1]
    assert sorted(job.job_id for page in pages for job in page.items) == sorted(ids)

    canceled = await client.cancel_job(ids[0])
    assert canceled.status == "canceled"
    replay = await client.replay_job(ids[0])
    assert (replay.replay_of, replay.status, from_value(replay.payload)) == (
        ids[0],
        "queued",
        {"n": 0},
    )
    summary = await client.get_job_summary()
    totals = summary.totals
    assert (totals.queued, totals.canceled, totals.total) == (3, 1, 4)
    assert [t.job_type for t in summary.job_types] == ["sdk.batch"]
    assert len((await client.list_jobs(status="queued")).items) == 3


async def test_jobs_are_completed_with_their_results_never_more_at_once_than_the_concurrency(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    release = asyncio.Event()
    running_now: list[str] = []
    most = 0

    async def handler(job: LeasedJob) -> object:
        nonlocal most
        running_now.append(job.job_id)
        most = max(most, len(running_now))
        await release.wait()
        running_now.remove(job.job_id)
        assert isinstance(job.payload, dict)
        n = job.payload["n"]
        assert isinstance(n, int)
        return {"double": n * 2, "attempt": job.attempt, "type": job.job_type}

    ids = [await enqueue(jobs, "sdk.double", source_id, {"n": n}) for n in range(6)]
    worker = make_worker(grpc_target, credentials, "sdk.double", handler, concurrency=3)
    async with running(worker):
        await until(lambda: len(running_now) == 3, "three handlers running")
        await asyncio.sleep(0.3)  # a worker asking for more than its free slots would get them
        leased = await jobs.list_jobs(status="leased")
        assert len(leased.items) == 3
        assert len((await jobs.list_jobs(status="queued")).items) == 3
        release.set()
        done = [await settled(jobs, job_id) for job_id in ids]
    assert most == 3
    for n, got in enumerate(done):
        assert from_value(got.job.result) == {"double": 2 * n, "attempt": 1, "type": "sdk.double"}
        assert got.job.attempts == 1
        assert history(got) == ["job.enqueued", "job.leased", "job.succeeded"]
    assert worker.held_jobs == 0


async def test_a_retryable_failure_is_retried_then_dead_lettered(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    attempts: list[int] = []

    async def handler(job: LeasedJob) -> object:
        attempts.append(job.attempt)
        raise JobFailed("dependency", "HTTP_503", "upstream is down", details={"host": "up"})

    job_id = await enqueue(jobs, "sdk.flaky", source_id, max_attempts=3, backoff=NO_BACKOFF)
    async with running(make_worker(grpc_target, credentials, "sdk.flaky", handler)):
        got = await settled(jobs, job_id, ["dead_lettered"])
    assert attempts == [1, 2, 3]
    assert got.job.attempts == 3
    error = got.job.last_error
    assert (error.category, error.code, error.message) == (
        "dependency",
        "HTTP_503",
        "upstream is down",
    )
    assert (error.retryable, error.attempt) == (True, 3)
    assert history(got) == [
        "job.enqueued",
        "job.leased",
        "job.failed",
        "job.leased",
        "job.failed",
        "job.leased",
        "job.dead_lettered",
    ]


async def test_a_non_retryable_failure_dead_letters_at_once(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    async def handler(job: LeasedJob) -> object:
        raise JobFailed("validation", "BAD_INPUT", "no such image", retryable=False)

    job_id = await enqueue(jobs, "sdk.strict", source_id, max_attempts=5, backoff=NO_BACKOFF)
    async with running(make_worker(grpc_target, credentials, "sdk.strict", handler)):
        got = await settled(jobs, job_id, ["dead_lettered"])
    assert got.job.attempts == 1
    error = got.job.last_error
    assert (error.category, error.code, error.retryable, error.attempt) == (
        "validation",
        "BAD_INPUT",
        False,
        1,
    )
    assert history(got) == ["job.enqueued", "job.leased", "job.dead_lettered"]


async def test_an_unhandled_exception_is_retried_and_a_result_that_is_not_json_is_not(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    async def handler(job: LeasedJob) -> object:
        if job.attempt == 1:
            raise KeyError("missing")
        return {"set": {1, 2}}  # not JSON: the job fails for good

    job_id = await enqueue(jobs, "sdk.buggy", source_id, max_attempts=3, backoff=NO_BACKOFF)
    async with running(make_worker(grpc_target, credentials, "sdk.buggy", handler)):
        got = await settled(jobs, job_id, ["dead_lettered"])
    assert got.job.attempts == 2
    error = got.job.last_error
    assert (error.category, error.code, error.retryable, error.attempt) == (
        "handler",
        "INVALID_RESULT",
        False,
        2,
    )
    assert (
        error.message
        == "the handler's result is not JSON: Object of type set is not JSON serializable"
    )
    failed = [e for e in got.history if e.type == "job.failed"]
    assert len(failed) == 1
    assert history(got) == [
        "job.enqueued",
        "job.leased",
        "job.failed",
        "job.leased",
        "job.dead_lettered",
    ]


async def test_any_other_exception_fails_the_job_as_a_retryable_unhandled_handler_error(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    async def handler(job: LeasedJob) -> object:
        raise ValueError("boom")

    job_id = await enqueue(jobs, "sdk.boom", source_id, max_attempts=1)
    async with running(make_worker(grpc_target, credentials, "sdk.boom", handler)):
        got = await settled(jobs, job_id, ["dead_lettered"])
    error = got.job.last_error
    assert (error.category, error.code, error.message, error.retryable) == (
        "handler",
        "UNHANDLED",
        "ValueError: boom",
        True,
    )


async def test_cancellation_reaches_the_handler_and_nothing_is_reported(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    started = asyncio.Event()
    seen: list[tuple[str, bool]] = []

    async def handler(job: LeasedJob) -> object:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append((job.job_id, job.canceled))
            raise
        return None

    job_id = await enqueue(jobs, "sdk.long", source_id)
    worker = make_worker(grpc_target, credentials, "sdk.long", handler)
    async with running(worker):
        await asyncio.wait_for(started.wait(), WAIT_SECONDS)
        canceled = await jobs.cancel_job(job_id)
        assert canceled.status == "canceled"
        # Heartbeats go every third of the 1 s lease.
        await until(lambda: bool(seen), "the handler to be cancelled")
        await until(lambda: worker.held_jobs == 0, "the worker to let go of the job")
        await asyncio.sleep(0.2)  # a completion, were one sent, would have landed
    assert seen == [(job_id, True)]
    got = await jobs.get_job(job_id)
    assert got.job.status == "canceled"
    assert history(got) == ["job.enqueued", "job.leased", "job.canceled"]


async def test_heartbeats_keep_a_job_longer_than_its_lease(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    expiries: list[datetime] = []

    async def handler(job: LeasedJob) -> object:
        expiries.append(job.expires_at)
        await asyncio.sleep(2.5)  # 2.5 leases of 1 s
        expiries.append(job.expires_at)
        return "slow but fine"

    job_id = await enqueue(jobs, "sdk.slow", source_id)
    async with running(make_worker(grpc_target, credentials, "sdk.slow", handler)):
        got = await settled(jobs, job_id)
    assert from_value(got.job.result) == "slow but fine"
    first, last = expiries
    assert last - first >= timedelta(seconds=1.5)  # extended by the heartbeats
    assert got.job.attempts == 1
    assert history(got) == ["job.enqueued", "job.leased", "job.succeeded"]


async def test_drain_finishes_the_jobs_in_flight_and_leases_no_more(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    started: list[str] = []

    async def handler(job: LeasedJob) -> object:
        started.append(job.job_id)
        await asyncio.sleep(0.5)
        return job.payload

    ids = [await enqueue(jobs, "sdk.drain", source_id, n) for n in range(2)]
    worker = make_worker(grpc_target, credentials, "sdk.drain", handler, concurrency=2)
    task = asyncio.create_task(worker.run())
    await until(lambda: len(started) == 2, "both jobs to start")
    worker.drain()
    later = await enqueue(jobs, "sdk.drain", source_id, 99)
    await asyncio.wait_for(task, WAIT_SECONDS)
    for n, job_id in enumerate(ids):
        got = await jobs.get_job(job_id)
        assert (got.job.status, from_value(got.job.result)) == ("succeeded", n)
    assert (await jobs.get_job(later)).job.status == "queued"
    assert worker.held_jobs == 0


async def test_a_job_still_running_after_the_grace_period_is_failed_for_a_retry(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    started = asyncio.Event()

    async def handler(job: LeasedJob) -> object:
        started.set()
        await asyncio.Event().wait()
        return None

    job_id = await enqueue(jobs, "sdk.stuck", source_id, max_attempts=3)
    worker = make_worker(grpc_target, credentials, "sdk.stuck", handler, grace_period=0.2)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), WAIT_SECONDS)
    worker.drain()
    await asyncio.wait_for(task, WAIT_SECONDS)
    got = await jobs.get_job(job_id)
    assert got.job.status == "failed"
    error = got.job.last_error
    assert (error.category, error.code, error.retryable, error.attempt) == (
        "worker",
        "SHUTDOWN",
        True,
        1,
    )
    assert error.message == "the worker stopped before the handler finished (grace period 0.2 s)"


async def test_a_lease_answer_over_4_mib_is_received(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    """gRPC's default cap on a received message is 4 MiB; 26 jobs with 64 KB JSON
    arrays of numbers (176 KB each as google.protobuf.Value: 11 bytes a number)
    passed it. The answer was refused after the server had taken the leases:
    every job ran out its lease, attempt after attempt, and was dead-lettered without
    having run once."""
    payload = {"samples": [1] * 16_000}  # 64,013 bytes as the server's JSON ("1.0,")
    job_ids = [await enqueue(jobs, "sdk.big", source_id, payload) for _ in range(26)]
    seen: list[int] = []

    async def handler(job: LeasedJob) -> object:
        assert isinstance(job.payload, dict)
        samples = job.payload["samples"]
        assert isinstance(samples, list)
        seen.append(len(samples))
        return {"n": len(samples)}

    worker = make_worker(grpc_target, credentials, "sdk.big", handler, concurrency=26)
    async with running(worker):
        for job_id in job_ids:
            got = await settled(jobs, job_id)
            assert got.job.attempts == 1
    assert seen == [16_000] * 26


async def test_details_the_server_refuses_are_dropped_and_the_failure_still_counts(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    """Failure details over the server's cap (64 KiB as JSON) are refused for their
    item; the SDK forgot the job, which sat leased until its lease expired and then
    ran again, its handler's error and non-retryable choice lost."""

    async def handler(job: LeasedJob) -> object:
        raise JobFailed(
            "validation", "TOO_MUCH", "see details", retryable=False, details={"d": "x" * 70_000}
        )

    job_id = await enqueue(jobs, "sdk.verbose", source_id, max_attempts=5, backoff=NO_BACKOFF)
    async with running(make_worker(grpc_target, credentials, "sdk.verbose", handler)):
        got = await settled(jobs, job_id, ["dead_lettered"])
    assert got.job.attempts == 1
    error = got.job.last_error
    assert (error.category, error.code, error.retryable) == ("validation", "TOO_MUCH", False)
    assert error.message == (
        "see details (details refused: failures[0].details: must be at most 65536 bytes"
        " as JSON, got 70008)"
    )
    [failed] = [e for e in got.history if e.type == "job.dead_lettered"]
    assert len(failed.data.fields["details"].struct_value.fields) == 0  # none sent


async def test_a_cancelled_task_the_handler_awaited_fails_the_job_and_frees_it(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    """A CancelledError that was not the worker's (a shared task someone else
    cancelled) was re-raised: the job stayed held, heartbeated for as long as the
    process lived. It fails as any handler error does, and is retried."""
    shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(job: LeasedJob) -> object:
        if job.attempt == 1:
            asyncio.get_running_loop().call_later(0.05, shared.cancel)
            await shared  # raises CancelledError in this handler's own task
        return {"attempt": job.attempt}

    job_id = await enqueue(jobs, "sdk.shared", source_id, max_attempts=3, backoff=NO_BACKOFF)
    async with running(make_worker(grpc_target, credentials, "sdk.shared", handler)):
        got = await settled(jobs, job_id)
    assert got.job.attempts == 2
    failed = [e for e in got.history if e.type == "job.failed"]
    assert len(failed) == 1
    assert history(got) == [
        "job.enqueued",
        "job.leased",
        "job.failed",
        "job.leased",
        "job.succeeded",
    ]


async def test_drain_returns_though_a_handler_ignores_its_cancellation(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    """After the grace period the worker cancels a running handler and waits
    CANCEL_WAIT_SECONDS; one that swallowed the cancellation was then awaited without
    a bound, so `run` never returned."""
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(job: LeasedJob) -> object:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        return None

    await enqueue(jobs, "sdk.deaf", source_id, max_attempts=3)
    worker = make_worker(grpc_target, credentials, "sdk.deaf", handler, grace_period=0.2)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), WAIT_SECONDS)
    began = time.monotonic()
    worker.drain()
    try:
        await asyncio.wait_for(asyncio.shield(task), 0.2 + 2 * CANCEL_WAIT_SECONDS + 5)
        assert task.done()
    finally:
        release.set()
    assert time.monotonic() - began < 0.2 + 2 * CANCEL_WAIT_SECONDS + 5


class Relay:
    """A TCP relay to the server that a test cuts (every connection aborted, the port
    closed: the worker's calls fail UNAVAILABLE) and restores on the same port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._links.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_the_worker_rides_out_an_outage_without_losing_or_repeating_a_job(
    jobs: JobsClient,
    source_id: str,
    app: Application,
    credentials: ClientCredentials,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="clients.worker")
    relay = Relay(app.grpc_port)
    await relay.start()
    started, proceed = asyncio.Event(), asyncio.Event()

    async def handler(job: LeasedJob) -> object:
        started.set()
        await proceed.wait()
        return {"payload": job.payload}

    first = await enqueue(jobs, "sdk.outage", source_id, "first")
    worker = make_worker(relay.target, credentials, "sdk.outage", handler, lease_duration=10.0)
    async with running(worker):
        await asyncio.wait_for(started.wait(), WAIT_SECONDS)
        relay.cut()  # the completion cannot be delivered...
        proceed.set()
        await until(lambda: "CompleteJobs failed (UNAVAILABLE" in caplog.text, "a failed try")
        assert (await jobs.get_job(first)).job.status == "leased"
        await relay.start()  # ...until the server is back
        got = await settled(jobs, first)
        assert from_value(got.job.result) == {"payload": "first"}
        assert history(got) == ["job.enqueued", "job.leased", "job.succeeded"]

        relay.cut()  # no leases while the server is away...
        await until(lambda: "LeaseJobs failed (UNAVAILABLE" in caplog.text, "a failed poll")
        second = await enqueue(jobs, "sdk.outage", source_id, "second")
        await asyncio.sleep(0.3)
        assert (await jobs.get_job(second)).job.status == "queued"
        await relay.start()  # ...and the job waiting is leased once it is back
        got = await settled(jobs, second)
        assert from_value(got.job.result) == {"payload": "second"}
        assert history(got) == ["job.enqueued", "job.leased", "job.succeeded"]
    relay.cut()


async def test_a_worker_that_lost_its_lease_stops_the_handler_and_reports_nothing(
    jobs: JobsClient,
    source_id: str,
    app: Application,
    grpc_target: str,
    credentials: ClientCredentials,
) -> None:
    relay = Relay(app.grpc_port)
    await relay.start()
    started = asyncio.Event()
    seen: list[tuple[str, bool]] = []

    async def stuck(job: LeasedJob) -> object:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append((job.job_id, job.canceled))
            raise
        return "from a"

    async def quick(job: LeasedJob) -> object:
        return "from b"

    job_id = await enqueue(jobs, "sdk.lost", source_id)
    cut_off = make_worker(relay.target, credentials, "sdk.lost", stuck)
    async with running(cut_off):
        await asyncio.wait_for(started.wait(), WAIT_SECONDS)
        relay.cut()  # no heartbeats: the 1 s lease expires and the reaper requeues the job
        requeued = await settled(jobs, job_id, ["queued"])
        assert requeued.job.attempts == 1
        async with running(make_worker(grpc_target, credentials, "sdk.lost", quick)):
            got = await settled(jobs, job_id)
        await relay.start()  # the first worker's next heartbeat learns the lease is gone
        await until(lambda: bool(seen), "the cut-off handler to be cancelled")
        await until(lambda: cut_off.held_jobs == 0, "the cut-off worker to let go")
    relay.cut()
    assert seen == [(job_id, False)]
    final = await jobs.get_job(job_id)
    assert (final.job.status, final.job.attempts) == ("succeeded", 2)
    assert from_value(final.job.result) == "from b"
    assert (
        history(final)
        == history(got)
        == [
            "job.enqueued",
            "job.leased",
            "job.lease_expired",
            "job.leased",
            "job.succeeded",
        ]
    )


# examples/worker.py as a real process


@asynccontextmanager
async def example(
    credentials: ClientCredentials, grpc_target: str, *args: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """examples/worker.py configured from the environment, its output lines collected
    as they come (the server runs on this event loop, so nothing here may block)."""
    env = {
        **os.environ,
        "ORCHESTRATOR_GRPC_TARGET": grpc_target,
        "ORCHESTRATOR_TOKEN_URL": credentials.token_url,
        "ORCHESTRATOR_CLIENT_ID": credentials.client_id,
        "ORCHESTRATOR_CLIENT_SECRET": credentials.client_secret,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--lease-duration",
        "2",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            lines.append(line.decode())

    reader = asyncio.create_task(collect())
    try:
        yield proc, lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader


async def test_the_example_worker_drains_on_sigterm_and_exits_0(
    jobs: JobsClient, source_id: str, grpc_target: str, credentials: ClientCredentials
) -> None:
    ids = [await enqueue(jobs, "example.work", source_id, {"n": n}) for n in range(2)]
    args = ("--job-type", "example.work", "--concurrency", "2", "--work-seconds", "1.5")
    async with example(credentials, grpc_target, *args) as (proc, lines):
        await until(
            lambda: all(any(f"leased job {i} " in line for line in lines) for i in ids),
            "the example to lease both jobs",
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT_SECONDS) == 0
    output = "".join(lines)
    assert "Traceback" not in output
    assert "draining: no more leases" in output
    for n, job_id in enumerate(ids):
        assert f"completed job {job_id} (attempt 1)" in output
        got = await jobs.get_job(job_id)
        assert got.job.status == "succeeded"
        result = from_value(got.job.result)
        assert isinstance(result, dict)
        worker_id = result["workerId"]
        assert isinstance(worker_id, str)
        assert worker_id.startswith("example-")
        assert result == {"jobId": job_id, "attempt": 1, "workerId": worker_id, "payload": {"n": n}}


@pytest.mark.parametrize(
    ("flags", "attempts", "statuses"),
    [
        ((), 2, ["failed", "dead_lettered"]),
        (("--non-retryable",), 1, ["dead_lettered"]),
    ],
    ids=["retryable", "non-retryable"],
)
async def test_the_example_worker_fails_with_the_error_asked_for(
    jobs: JobsClient,
    source_id: str,
    grpc_target: str,
    credentials: ClientCredentials,
    flags: tuple[str, ...],
    attempts: int,
    statuses: list[str],
) -> None:
    job_id = await enqueue(jobs, "example.fail", source_id, max_attempts=2, backoff=NO_BACKOFF)
    args = ("--job-type", "example.fail", "--fail-with", "dependency:HTTP_503", *flags)
    async with example(credentials, grpc_target, *args) as (proc, lines):
        got = await settled(jobs, job_id, ["dead_lettered"])
        await until(lambda: any("-> dead_lettered" in line for line in lines), "the log line")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT_SECONDS) == 0
    assert got.job.attempts == attempts
    error = got.job.last_error
    assert (error.category, error.code, error.retryable) == (
        "dependency",
        "HTTP_503",
        not flags,
    )
    assert error.message == "failing as asked (--fail-with dependency:HTTP_503)"
    failed = [line for line in lines if f"failed job {job_id} " in line]
    assert [line.rsplit(" -> ", 1)[1].split(",")[0].strip() for line in failed] == statuses
