"""Listing specs and error factories, below any storage: the token bindings and keys the
specs produce are the ones the hand-written listings produced (so tokens issued before
stay valid), and the factories give the messages, reasons and metadata clients see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from server.domain.audit import AUDIT_LISTING, AuditEntry, AuditQuery
from server.domain.errors import AlreadyExists, InvalidArgument, NotFound, Violation
from server.domain.pagination import TEXT, ListingSpec, PageTokens, SortKey
from server.domain.sources import SOURCE, SOURCE_LISTING, Source, SourceQuery

T0 = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
T0_MICROS = 1795341600123456


def test_source_binding_is_the_one_tokens_were_issued_for() -> None:
    query = SourceQuery(tenant_id="acme", project_id="p", source_type="webhook", enabled=False)
    assert SOURCE_LISTING.binding(query) == {
        "list": "sources",
        "tenant": "acme",
        "project": "p",
        "sourceType": "webhook",
        "enabled": False,
        "sort": ("name", "sourceId"),
    }


def test_audit_binding_is_the_one_tokens_were_issued_for() -> None:
    query = AuditQuery(tenant_id="acme", action="sources.pause", since=T0)
    assert AUDIT_LISTING.binding(query) == {
        "list": "audit",
        "tenant": "acme",
        "action": "sources.pause",
        "actor": None,
        "resource": None,
        "traceId": None,
        "since": T0_MICROS,
        "until": None,
        "sort": ("-createdAt", "-entryId"),
    }


def test_keys_round_trip_through_a_token() -> None:
    tokens = PageTokens(b"k" * 32)
    source = Source("s-1", "acme", None, "name", "manual", True, False, T0, T0)
    assert SOURCE_LISTING.key(source) == ("name", "s-1")
    binding = SOURCE_LISTING.binding(SourceQuery(tenant_id="acme"))
    token = tokens.encode(SOURCE_LISTING.key(source), binding=binding)
    assert SOURCE_LISTING.position(tokens.decode(token, binding=binding)) == ("name", "s-1")

    entry = AuditEntry(
        entry_id="e-1",
        tenant_id="acme",
        actor="a",
        action="sources.pause",
        resource="sources/s-1",
        reason=None,
        ticket=None,
        token_id=None,
        quota_reason=None,
        quota_ticket=None,
        backfill_reason=None,
        backfill_ticket=None,
        trace_id="t",
        before=None,
        after=None,
        created_at=T0.replace(tzinfo=None),  # SQLite hands back naive UTC
    )
    assert AUDIT_LISTING.key(entry) == (T0_MICROS, "e-1")
    assert AUDIT_LISTING.position((T0_MICROS, "e-1")) == (T0, "e-1")


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (SOURCE_LISTING, ("name",)),
        (SOURCE_LISTING, ("name", 1)),
        (SOURCE_LISTING, (None, "id")),
        (AUDIT_LISTING, ("2026-11-22", "id")),
        (AUDIT_LISTING, (True, "id")),
        (AUDIT_LISTING, (-(10**18), "id")),
    ],
    ids=["short", "int-id", "null-name", "text-time", "bool-time", "before-year-1"],
)
def test_a_key_of_another_shape_does_not_point_into_the_listing(
    spec: ListingSpec[Any, Any], key: tuple[Any, ...]
) -> None:
    with pytest.raises(InvalidArgument) as err:
        spec.position(key)
    assert str(err.value) == "continuationToken: does not point into this listing"
    assert err.value.violations == (
        Violation("continuationToken", "does not point into this listing"),
    )


def test_a_spec_runs_one_direction() -> None:
    with pytest.raises(ValueError, match="same direction"):
        ListingSpec(
            name="mixed",
            sort=(SortKey("-a", "a", TEXT), SortKey("b", "b", TEXT)),
            filters={},
        )


def test_not_found_of_a_resource() -> None:
    error = NotFound.of(SOURCE, "no-such-source")
    assert (error.message, error.reason) == (
        "source 'no-such-source' not found",
        "SOURCE_NOT_FOUND",
    )
    assert error.metadata == {"sourceId": "no-such-source"}


def test_already_exists_of_a_resource() -> None:
    error = AlreadyExists.of(SOURCE, "name", "dup")
    assert error.message == "a source named 'dup' already exists in this tenant"
    assert (error.reason, error.metadata) == ("SOURCE_EXISTS", {"name": "dup"})
    other = AlreadyExists.of(SOURCE, "externalId", "x-1")
    assert other.message == "a source with externalId 'x-1' already exists in this tenant"


def test_invalid_argument_from_violations() -> None:
    violations = (Violation("name", "is required"), Violation("sourceType", "is required"))
    error = InvalidArgument.from_violations(violations)
    assert error.message == "name: is required; sourceType: is required"
    assert (error.reason, error.violations) == ("INVALID_ARGUMENT", violations)
    with pytest.raises(ValueError, match="at least one violation"):
        InvalidArgument.from_violations(())
