"""Domain errors: what went wrong, in terms of the product, with no transport in sight.

`server/errors.py` turns each into one `google.rpc.Status` (AIP-193); nothing else
does. Each error carries a machine-readable `reason` (ErrorInfo) and, for bad
input, the violations naming the offending field or header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
        return cls(
            f"{name}: {description}", reason=reason, violations=(Violation(name, description),)
        )


@dataclass
class NotFound(DomainError):
    reason: str = "NOT_FOUND"


@dataclass
class AlreadyExists(DomainError):
    reason: str = "ALREADY_EXISTS"


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
