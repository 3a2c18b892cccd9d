"""What the OpenAPI documents say beyond the protos' HTTP rules: who may call an
operation and the headers the API's own server reads or writes.

The gateway decides nothing about callers (DESIGN.md §2), so it cannot know which
scopes or headers an operation needs; the API's owner says so through
`describe_security`, a function of the method descriptor (typically a reader of the
upstream's own policy options). Every default is product-neutral: no hook, no
security section; no token URL, a plain bearer scheme (RFC 6750); no header but
those the gateway itself answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor


@dataclass(frozen=True, slots=True)
class DocumentedHeader:
    """One HTTP header as an OpenAPI header parameter or response header.

    `schema` is the JSON Schema (2020-12) of the value exactly as the server judges it,
    built from the same constants and patterns its checks use, so a client that
    follows the document is never refused for the value's shape; None documents any
    string (non-empty when `required`).
    """

    name: str
    required: bool = False
    description: str = ""
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OperationSecurity:
    """What an operation needs of its caller."""

    authenticated: bool  # False: anonymous callers are served (`security: []`)
    scopes: tuple[str, ...] = ()  # OAuth 2.0 scopes the token must hold, all of them
    headers: tuple[DocumentedHeader, ...] = ()  # request headers the server reads
    note: str = ""  # appended to the operation's description as its own paragraph


def no_security(method: MethodDescriptor) -> OperationSecurity | None:
    """The default: nothing is known, so operations carry no `security`."""
    return None


def no_field_rules(field: FieldDescriptor) -> Mapping[str, Any] | None:
    """The default: a field's schema is its type's JSON form and nothing more."""
    return None


@dataclass(frozen=True, slots=True)
class OpenApiConfig:
    # Per method; None leaves the operation's `security` out.
    describe_security: Callable[[MethodDescriptor], OperationSecurity | None] = no_security
    # The OAuth 2.0 token endpoint of the client credentials flow (RFC 6749 §4.4),
    # scheme `oauth2`; without it, secured operations use an HTTP `bearer` scheme.
    token_url: str | None = None
    # Tokens may also be DPoP-bound (RFC 9449): a `dpop` scheme is offered beside it.
    dpop: bool = False
    # Headers every response may carry (e.g. the server's trace id).
    response_headers: tuple[DocumentedHeader, ...] = field(default=())
    # Per field: the JSON Schema keywords (pattern, bounds) of the checks the API's
    # server applies to its values beyond their type, merged into the field's schema
    # wherever it appears (body, query, path; each item of a repeated field). The
    # gateway validates types only, so without them a document promises that every
    # value of the right type is accepted.
    field_rules: Callable[[FieldDescriptor], Mapping[str, Any] | None] = no_field_rules
