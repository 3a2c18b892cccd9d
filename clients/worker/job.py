"""What a handler is given and what it raises: `LeasedJob` and `JobFailed`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf import struct_pb2
from google.rpc import status_pb2

from clients.json_values import JsonValue, from_value, to_value
from orchestrator.jobengine.v1 import job_pb2
from orchestrator.jobengine.v1 import worker_service_pb2 as pb

# JobFailure.category is a lowercase slug of at most 64 characters, JobFailure.code at
# most 128 characters (worker_service.proto); the slug is the product's one slug rule.
CATEGORY_PATTERN = re.compile(r"[a-z][a-z0-9._-]{0,63}")
CODE_MAX = 128
MESSAGE_MAX = 4096  # the server truncates longer messages


@dataclass(eq=False)
class LeasedJob:
    """One job this worker holds, as the handler sees it.

    `payload` is the job's JSON payload as plain Python values (None when absent);
    `job` the whole `Job` message as leased. `canceled` turns true when a heartbeat
    learned that the job was canceled, just before the handler's task is cancelled
    (the handler sees `asyncio.CancelledError`, and nothing is reported for the job).
    """

    job: job_pb2.Job
    token: pb.FencingToken
    expires_at: datetime
    payload: JsonValue
    canceled: bool = field(default=False, init=False)

    @classmethod
    def from_lease(cls, lease: pb.Lease) -> LeasedJob:
        payload = from_value(lease.job.payload) if lease.job.HasField("payload") else None
        return cls(
            job=lease.job,
            token=lease.token,
            expires_at=lease.expires_at.ToDatetime(UTC),
            payload=payload,
        )

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def job_type(self) -> str:
        return self.job.job_type

    @property
    def attempt(self) -> int:
        """This attempt, 1-based (the fencing token's attempt)."""
        return self.token.attempt

    @property
    def max_attempts(self) -> int:
        return self.job.max_attempts


Handler = Callable[[LeasedJob], Awaitable[object]]
"""`async def handler(job: LeasedJob) -> result`: the result is any JSON value (see
`clients.json_values.to_value`); raising fails the attempt (see `JobFailed`)."""


class JobFailed(Exception):
    """Raised by a handler to fail its job with a chosen error.

    `category` is a lowercase slug (a letter, then up to 63 letters, digits, '.', '_'
    or '-'; e.g. "timeout", "dependency"), `code` a machine-readable code of 1 to 128
    characters within it (e.g. "HTTP_503"), `message` human-readable (the server keeps
    4,096 characters). A `retryable` failure is retried after the job's backoff while
    attempts remain; a non-retryable one dead-letters the job at once. `details` is
    any JSON object kept with the error in the failure event.

    Any other exception from a handler fails the job as retryable, category
    "handler", code "UNHANDLED", with the exception as the message. Raises ValueError
    for a malformed category or code, or details that are not a JSON object.
    """

    def __init__(
        self,
        category: str,
        code: str,
        message: str = "",
        *,
        retryable: bool = True,
        details: Mapping[str, object] | None = None,
    ) -> None:
        if not CATEGORY_PATTERN.fullmatch(category):
            raise ValueError(
                f"category must be a lowercase slug (a letter, then up to 63 letters, "
                f"digits, '.', '_' or '-'), got {category!r}"
            )
        if not 1 <= len(code) <= CODE_MAX or not code.isprintable() or code.strip() != code:
            raise ValueError(f"code must be 1 to {CODE_MAX} printable characters, got {code!r}")
        super().__init__(f"{category}/{code}: {message}" if message else f"{category}/{code}")
        self.category = category
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details: struct_pb2.Struct | None = None
        if details is not None:
            try:
                self.details = to_value(dict(details)).struct_value
            except TypeError as exc:
                raise ValueError(f"details must be a JSON object: {exc}") from exc

    def without_details(self, refusal: status_pb2.Status) -> JobFailed:
        """This failure without its details, which the server refused (`refusal`, e.g.
        over its size cap); the message says so."""
        note = f"(details refused: {refusal.message})"
        message = f"{self.message} {note}" if self.message else note
        return JobFailed(self.category, self.code, message, retryable=self.retryable)

    def to_failure(self, token: pb.FencingToken) -> pb.JobFailure:
        """The `JobFailure` item that reports this error for the lease `token`."""
        failure = pb.JobFailure(
            token=token,
            category=self.category,
            code=self.code,
            message=self.message[:MESSAGE_MAX],
            retryable=self.retryable,
        )
        if self.details is not None:
            failure.details.CopyFrom(self.details)
        return failure
