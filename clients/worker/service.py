"""The WorkerService RPCs as typed calls (proto/orchestrator/jobengine/v1/worker_service.proto).

gRPC only (the service has no HTTP binding): use `GrpcTransport`, or
`InProcessTransport` inside the server process. A long poll outlives a short
transport deadline, so the transport's timeout must exceed the wait timeout asked
for (`Worker.connect` sets it so).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from google.protobuf.message import Message

from clients.base import ResponseT, ServiceClient
from clients.errors import ApiError
from orchestrator.jobengine.v1 import worker_service_pb2 as pb

# Most items one Heartbeat, CompleteJobs or FailJobs call takes (the proto's limit).
MAX_BATCH = 1000


class WorkerServiceClient(ServiceClient):
    service = pb.DESCRIPTOR.services_by_name["WorkerService"]

    async def call(
        self, method: str, request: Message, response_type: type[ResponseT]
    ) -> ResponseT:
        """As `ServiceClient.call`, and once more with a fresh token when the server
        refuses the cached one (UNAUTHENTICATED: revoked, or the clocks disagree about
        its expiry), so a long-running worker survives a token the server stopped
        accepting before `ClientCredentials` would have refreshed it."""
        try:
            return await super().call(method, request, response_type)
        except ApiError as exc:
            if exc.code != "UNAUTHENTICATED" or self.credentials is None:
                raise
            self.credentials.invalidate()
        return await super().call(method, request, response_type)

    async def lease_jobs(
        self,
        worker_id: str,
        job_types: Sequence[str],
        max_jobs: int,
        *,
        wait_timeout: float,
        lease_duration: float,
    ) -> list[pb.Lease]:
        """Up to `max_jobs` leases, waiting up to `wait_timeout` seconds for work;
        each lease lasts `lease_duration` seconds unless extended."""
        request = pb.LeaseJobsRequest(worker_id=worker_id, job_types=job_types, max_jobs=max_jobs)
        request.wait_timeout.FromTimedelta(_seconds(wait_timeout))
        request.lease_duration.FromTimedelta(_seconds(lease_duration))
        return list((await self.call("LeaseJobs", request, pb.LeaseJobsResponse)).leases)

    async def heartbeat(
        self, worker_id: str, tokens: Sequence[pb.FencingToken], *, lease_duration: float
    ) -> list[pb.HeartbeatResult]:
        """Extend the leases of `tokens` (at most `MAX_BATCH`) by `lease_duration`
        seconds from now; one result per token, in order."""
        request = pb.HeartbeatRequest(worker_id=worker_id, tokens=tokens)
        request.lease_duration.FromTimedelta(_seconds(lease_duration))
        return list((await self.call("Heartbeat", request, pb.HeartbeatResponse)).results)

    async def complete_jobs(
        self, worker_id: str, completions: Sequence[pb.JobCompletion]
    ) -> list[pb.JobOutcome]:
        """Complete leased jobs (at most `MAX_BATCH`); one outcome per item, in order."""
        request = pb.CompleteJobsRequest(worker_id=worker_id, completions=completions)
        return list((await self.call("CompleteJobs", request, pb.CompleteJobsResponse)).results)

    async def fail_jobs(
        self, worker_id: str, failures: Sequence[pb.JobFailure]
    ) -> list[pb.JobOutcome]:
        """Fail leased jobs (at most `MAX_BATCH`); one outcome per item, in order."""
        request = pb.FailJobsRequest(worker_id=worker_id, failures=failures)
        return list((await self.call("FailJobs", request, pb.FailJobsResponse)).results)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
