"""Domain errors -> `google.rpc.Status`, in exactly one place (AIP-193).

The status carries an `ErrorInfo` (reason, domain, metadata) and, for bad input, a
`BadRequest` with one field violation per offending field or header. Clients of any
transport read the same details.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.domain import errors as domain

ERROR_DOMAIN = "orchestrator.stella-ops.org"
DETAILS_METADATA_KEY = "grpc-status-details-bin"
# A domain error's challenge rides in its ErrorInfo metadata under this key and
# leaves as the `www-authenticate` trailer, which the gateway exposes as a header.
CHALLENGE_METADATA_KEY = "wwwAuthenticate"
CHALLENGE_TRAILER = "www-authenticate"
# An Unavailable error's wait leaves as a google.rpc.RetryInfo detail and as this
# trailer (whole seconds, rounded up), which the gateway exposes as Retry-After
# (RFC 9110 §10.2.3).
RETRY_AFTER_TRAILER = "retry-after"

# Most specific class first; the walk over the MRO picks the nearest entry.
_CODES: dict[type[domain.DomainError], int] = {
    domain.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    domain.NotFound: code_pb2.NOT_FOUND,
    domain.AlreadyExists: code_pb2.ALREADY_EXISTS,
    domain.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    domain.PermissionDenied: code_pb2.PERMISSION_DENIED,
    domain.Unauthenticated: code_pb2.UNAUTHENTICATED,
    domain.Aborted: code_pb2.ABORTED,
    domain.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    domain.Unavailable: code_pb2.UNAVAILABLE,
    domain.UpstreamFailed: code_pb2.UNKNOWN,
    domain.DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
    domain.DomainError: code_pb2.UNKNOWN,
}

_GRPC_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def code_of(error: domain.DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return int(code_pb2.UNKNOWN)


def to_status(error: domain.DomainError) -> status_pb2.Status:
    status = status_pb2.Status(code=code_of(error), message=error.message)
    metadata = dict(error.metadata)
    if error.challenge:
        metadata[CHALLENGE_METADATA_KEY] = error.challenge
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    status.details.append(_pack(info))
    if isinstance(error, domain.InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        status.details.append(_pack(bad))
    if isinstance(error, domain.Unavailable) and error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(0.0, error.retry_after_s) * 1e9))
        status.details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status


def internal_status(trace_id: str) -> status_pb2.Status:
    """What a caller sees of a bug: a trace id to report, never the traceback."""
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error; quote trace id {trace_id} when reporting"
    )


def grpc_code(code: int) -> grpc.StatusCode:
    return _GRPC_CODES.get(code, grpc.StatusCode.UNKNOWN)


def status_trailers(status: status_pb2.Status) -> tuple[tuple[str, str | bytes], ...]:
    trailers: tuple[tuple[str, str | bytes], ...] = (
        (DETAILS_METADATA_KEY, status.SerializeToString()),
    )
    challenge = _challenge(status)
    if challenge is not None:
        trailers += ((CHALLENGE_TRAILER, challenge),)
    retry_after = _retry_after(status)
    if retry_after is not None:
        trailers += ((RETRY_AFTER_TRAILER, retry_after),)
    return trailers


def _retry_after(status: status_pb2.Status) -> str | None:
    """A RetryInfo's delay as Retry-After's delay-seconds: whole seconds, rounded up."""
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            nanos = info.retry_delay.ToNanoseconds()
            return str(max(0, -(-nanos // 1_000_000_000)))
    return None


def _challenge(status: status_pb2.Status) -> str | None:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and CHALLENGE_METADATA_KEY in info.metadata:
            return str(info.metadata[CHALLENGE_METADATA_KEY])
    return None


def _pack(
    message: error_details_pb2.ErrorInfo
    | error_details_pb2.BadRequest
    | error_details_pb2.RetryInfo,
) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
