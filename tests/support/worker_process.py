"""A worker process for the concurrency and fault tests: the worker SDK (`Worker`)
over a gRPC transport that writes down every lease granted and every completion
sent and answered, so a test can count what the server accepted after the process
was killed with SIGKILL.

    python -m tests.support.worker_process --target HOST:PORT --token-url URL \\
        --client-id ID --client-secret S --job-type T --record FILE [--worker-id W]

The record file gets one line per event, written with a single `write` on an
O_APPEND descriptor (so it survives a SIGKILL of this process whole-line):

    L job_id lease_id attempt       a lease the server granted (LeaseJobs answer)
    S job_id lease_id attempt       a completion about to be sent (CompleteJobs)
    A job_id lease_id attempt code  the server's answer for that item (0 = accepted)
    E job_id lease_id attempt CODE  the whole call failed (e.g. UNAVAILABLE; retried)
    H job_id lease_id attempt       a handler started holding its job (see below)

The handler reads the job's payload (a JSON object): `{"stall": s}` blocks this
process's event loop for s seconds on the first attempt (`time.sleep`: no heartbeats,
so the lease runs out while the handler still thinks it holds the job, and its
completion then goes out with a stale fencing token); `{"hold": true}` waits forever
on the first attempt (heartbeats keep the lease; the test kills the process); any
other payload sleeps `--work-seconds` and answers `{"n": payload["n"], "attempt": a}`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping, Sequence

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from clients.auth import ClientCredentials
from clients.errors import ApiError
from clients.transports.base import ResponseT
from clients.transports.grpc import GrpcTransport
from clients.worker import LeasedJob, Worker
from clients.worker.runner import DEADLINE_MARGIN_SECONDS
from orchestrator.jobengine.v1 import worker_service_pb2 as pb


class Record:
    """The record file: whole lines appended with one write each."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, lines: Sequence[str]) -> None:
        if lines:
            os.write(self._fd, "".join(line + "\n" for line in lines).encode())


def _token_lines(kind: str, tokens: Sequence[pb.FencingToken], *extra: str) -> list[str]:
    tail = "".join(f" {value}" for value in extra)
    return [f"{kind} {t.job_id} {t.lease_id} {t.attempt}{tail}" for t in tokens]


class RecordingTransport(GrpcTransport):
    """`GrpcTransport` that writes LeaseJobs answers and CompleteJobs items and
    answers to the record."""

    def __init__(self, target: str, record: Record, *, timeout: float) -> None:
        super().__init__(target, timeout=timeout)
        self._record = record

    async def call(
        self,
        method: MethodDescriptor,
        request: Message,
        response_type: type[ResponseT],
        *,
        headers: Mapping[str, str],
    ) -> ResponseT:
        if not isinstance(request, pb.CompleteJobsRequest):
            response = await super().call(method, request, response_type, headers=headers)
            if isinstance(response, pb.LeaseJobsResponse):
                self._record.write(_token_lines("L", [lease.token for lease in response.leases]))
            return response
        tokens = [item.token for item in request.completions]
        self._record.write(_token_lines("S", tokens))
        try:
            response = await super().call(method, request, response_type, headers=headers)
        except ApiError as exc:
            self._record.write(_token_lines("E", tokens, exc.code or "UNKNOWN"))
            raise
        assert isinstance(response, pb.CompleteJobsResponse)
        self._record.write(
            [
                f"A {t.job_id} {t.lease_id} {t.attempt} {result.status.code}"
                for t, result in zip(tokens, response.results, strict=True)
            ]
        )
        return response


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--job-type", dest="job_types", action="append", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--worker-id")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease-duration", type=float, default=2.0)
    parser.add_argument("--wait-timeout", type=float, default=1.0)
    parser.add_argument("--work-seconds", type=float, default=0.0)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    record = Record(args.record)

    async def handler(job: LeasedJob) -> object:
        payload = job.payload if isinstance(job.payload, dict) else {}
        if job.attempt == 1 and "stall" in payload:
            stall = payload["stall"]
            assert isinstance(stall, int | float)
            time.sleep(float(stall))  # noqa: ASYNC251 (blocks the loop: no heartbeats)
        elif job.attempt == 1 and payload.get("hold"):
            record.write(_token_lines("H", [job.token]))
            await asyncio.Event().wait()
        elif args.work_seconds > 0:
            await asyncio.sleep(args.work_seconds)
        return {"n": payload.get("n"), "attempt": job.attempt}

    transport = RecordingTransport(
        args.target, record, timeout=args.wait_timeout + DEADLINE_MARGIN_SECONDS
    )
    worker = Worker(
        transport,
        job_types=args.job_types,
        handler=handler,
        credentials=ClientCredentials(
            token_url=args.token_url,
            client_id=args.client_id,
            client_secret=args.client_secret,
            scopes=["orch:operate"],
        ),
        worker_id=args.worker_id,
        concurrency=args.concurrency,
        lease_duration=args.lease_duration,
        wait_timeout=args.wait_timeout,
        grace_period=5.0,
        owns_transport=True,
    )
    await worker.run(handle_signals=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
