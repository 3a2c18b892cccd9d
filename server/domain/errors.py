"""Domain errors: what went wrong, in terms of the product, with no transport in sight.

`server/errors.py` turns each into one `google.rpc.Status` (AIP-193); nothing else
does. Each error carries a machine-readable `reason` (ErrorInfo) and, for bad
input, the violations naming the offending field or header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.domain.resources import ResourceType


@dataclass(frozen=True, slots=True)
class Violation:
    """One bad field or header: `field` is the name the caller used."""

    field: str
    description: str


@dataclass
class DomainError(Exception):
    message: str
    reason: str = "ERROR"
    metadata: Mapping[str, str] = field(default_factory=dict)
    # A WWW-Authenticate challenge to answer with (RFC 9110 §11.6.1), e.g. for a
    # refused client (RFC 6749 §5.2) or access token (RFC 6750 §3).
    challenge: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class InvalidArgument(DomainError):
    reason: str = "INVALID_ARGUMENT"
    violations: tuple[Violation, ...] = ()

    @classmethod
    def of(
        cls, name: str, description: str, *, reason: str = "INVALID_ARGUMENT"
    ) -> InvalidArgument:
        """The common case: one field or header is wrong, and the message says which."""
        return cls.from_violations((Violation(name, description),), reason=reason)

    @classmethod
    def from_violations(
        cls, violations: Sequence[Violation], *, reason: str = "INVALID_ARGUMENT"
    ) -> InvalidArgument:
        """Every bad field at once (AIP-193 BadRequest): the message is
        "field: description; field: description", in the order given. `violations`
        must not be empty."""
        if not violations:
            raise ValueError("an InvalidArgument names at least one violation")
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(message, reason=reason, violations=tuple(violations))


@dataclass
class NotFound(DomainError):
    reason: str = "NOT_FOUND"

    @classmethod
    def of(cls, resource: ResourceType[Any], resource_id: str) -> NotFound:
        """`source 'x' not found`, reason SOURCE_NOT_FOUND, metadata {"sourceId": "x"}.
        Absent and not the caller's (another tenant's, another project's) are the same
        answer, so nobody learns which ids exist elsewhere. An id longer than
        `ECHO_MAX` characters (no issued id is) is echoed cut to its first
        `ECHO_MAX` with "…" and its length, so an answer stays small whatever was sent."""
        shown = echo(resource_id)
        return cls(
            f"{resource.singular} {shown!r}{_length(resource_id)} not found",
            reason=f"{resource.reason_prefix}_NOT_FOUND",
            metadata={resource.id_field: shown},
        )


ECHO_MAX = 200  # characters of a caller's id an error message repeats


def echo(value: str) -> str:
    """`value` as an error repeats it: at most `ECHO_MAX` characters, then "…"."""
    return value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…"


def shown(value: str) -> str:
    """`value` quoted as an error message repeats a caller's text: `'abc'`, or for
    text over `ECHO_MAX` characters its first `ECHO_MAX`, "…" and its length
    (`'aaa…' (100000 characters)`), so an answer stays small whatever was sent."""
    return f"{echo(value)!r}{_length(value)}"


def _length(value: str) -> str:
    return "" if len(value) <= ECHO_MAX else f" ({len(value)} characters)"


@dataclass
class AlreadyExists(DomainError):
    reason: str = "ALREADY_EXISTS"

    @classmethod
    def of(cls, resource: ResourceType[Any], field: str, value: str) -> AlreadyExists:
        """A tenant-unique `field` is taken: "a source named 'x' already exists in this
        tenant" (field "name"; other fields read "with {field} 'x'"), reason
        SOURCE_EXISTS, metadata {field: value}."""
        what = "named" if field == "name" else f"with {field}"
        return cls(
            f"a {resource.singular} {what} {value!r} already exists in this tenant",
            reason=f"{resource.reason_prefix}_EXISTS",
            metadata={field: value},
        )


@dataclass
class FailedPrecondition(DomainError):
    reason: str = "FAILED_PRECONDITION"


@dataclass
class PermissionDenied(DomainError):
    reason: str = "PERMISSION_DENIED"


@dataclass
class Unauthenticated(DomainError):
    reason: str = "UNAUTHENTICATED"


@dataclass
class Aborted(DomainError):
    reason: str = "ABORTED"


@dataclass
class ResourceExhausted(DomainError):
    reason: str = "RESOURCE_EXHAUSTED"


@dataclass
class Unavailable(DomainError):
    """The service cannot answer now (e.g. its database is unreachable); the same
    call may succeed when retried with backoff (AIP-194)."""

    reason: str = "UNAVAILABLE"
    # When known, how long (seconds) until a retry may succeed: the status carries a
    # google.rpc.RetryInfo and the `retry-after` trailer (HTTP Retry-After).
    retry_after_s: float | None = None


@dataclass
class UpstreamFailed(DomainError):
    """A service this server calls failed: answered an error status, garbage or too
    much, or could not be reached. Code UNKNOWN (the failure is the upstream's, in its
    own error space); the proxy methods answer it 502 Bad Gateway over HTTP (their
    `error_status` option)."""

    reason: str = "UPSTREAM_FAILED"


@dataclass
class DeadlineExceeded(DomainError):
    """Something this server waited on did not answer in time (504 over HTTP)."""

    reason: str = "DEADLINE_EXCEEDED"
