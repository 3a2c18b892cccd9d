"""The vocabulary of authorization: OAuth scopes and role permissions (DESIGN.md §4.5).

Scopes are what a token may do; `orch:quota` and `orch:backfill` change capacity or
replay history, so seed 003 makes a token request justify them: the reason (and an
optional ticket) becomes a claim, and from there part of every audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass

READ = "orch:read"
QUOTA = "orch:quota"
OPERATE = "orch:operate"
BACKFILL = "orch:backfill"
ADMIN = "orch:admin"

SCOPES: tuple[str, ...] = (READ, QUOTA, OPERATE, BACKFILL, ADMIN)

ORCHESTRA_PERMISSION = "access orchestra api"
PERMISSIONS: tuple[str, ...] = (ORCHESTRA_PERMISSION,)

REASON_MAX = 256
TICKET_MAX = 128


@dataclass(frozen=True, slots=True)
class Justified:
    """A scope that needs a reason: the form fields that carry it, which become claims."""

    scope: str
    reason_field: str
    ticket_field: str


JUSTIFIED: tuple[Justified, ...] = (
    Justified(QUOTA, "quota_reason", "quota_ticket"),
    Justified(BACKFILL, "backfill_reason", "backfill_ticket"),
)
JUSTIFIED_SCOPES = frozenset(j.scope for j in JUSTIFIED)


def canonical(scopes: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Known scopes in their documented order: stable claims and listings."""
    return tuple(scope for scope in SCOPES if scope in scopes)
