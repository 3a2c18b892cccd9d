"""Audit rows as API messages, and request times as the datetimes the listing compares."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import json_format, timestamp_pb2

from server.domain.errors import InvalidArgument
from server.services.convert import audit_entry, datetime_of
from server.storage.tables import AuditEntryRow


def _row(**changes: object) -> AuditEntryRow:
    values: dict[str, object] = {
        "entry_id": "e-1",
        "tenant_id": "acme",
        "actor": "client-1",
        "action": "sources.pause",
        "resource": "sources/s-1",
        "reason": "maintenance",
        "ticket": None,
        "token_id": "jti-1",
        "quota_reason": None,
        "quota_ticket": None,
        "backfill_reason": None,
        "backfill_ticket": None,
        "trace_id": "tr-1",
        "before": '{"name":"n","paused":false,"projectId":null}',
        "after": '{"name":"n","paused":true,"projectId":null}',
        "created_at": datetime(2026, 11, 22, 10, 0, 0, 250000),  # naive, as SQLite reads
    }
    values.update(changes)
    return AuditEntryRow.model_validate(values)


def test_entry_json_has_objects_and_omits_what_the_call_lacked() -> None:
    document = json_format.MessageToDict(audit_entry(_row()))
    assert document == {
        "entryId": "e-1",
        "tenantId": "acme",
        "actor": "client-1",
        "action": "sources.pause",
        "resource": "sources/s-1",
        "reason": "maintenance",
        "tokenId": "jti-1",
        "traceId": "tr-1",
        "before": {"name": "n", "paused": False, "projectId": None},
        "after": {"name": "n", "paused": True, "projectId": None},
        "createdAt": "2026-11-22T10:00:00.250Z",
    }


def test_entry_carries_every_justification_and_absent_states() -> None:
    row = _row(
        ticket="OPS-1",
        quota_reason="launch",
        quota_ticket="CAP-7",
        backfill_reason="outage",
        backfill_ticket="INC-9",
        before=None,
        after=None,
    )
    message = audit_entry(row)
    assert (message.ticket, message.quota_reason, message.quota_ticket) == (
        "OPS-1",
        "launch",
        "CAP-7",
    )
    assert (message.backfill_reason, message.backfill_ticket) == ("outage", "INC-9")
    assert not message.HasField("before")
    assert not message.HasField("after")


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (0, 0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1, 1, datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC)),
        (1, 999_999_999, datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC)),
        (-1, 500_000_000, datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
        (-62135596800, 0, datetime(1, 1, 1, tzinfo=UTC)),
        (253402300799, 999_999_999, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
    ids=["epoch", "rounds-up", "carries", "before-epoch", "minimum", "maximum-clamped"],
)
def test_request_time_rounds_up_to_the_stored_microsecond(
    seconds: int, nanos: int, expected: datetime
) -> None:
    value = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert datetime_of(value, field="since") == expected


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(-62135596801, 0), (253402300800, 0), (0, -1), (0, 1_000_000_000)],
    ids=["before-year-1", "after-9999", "negative-nanos", "nanos-overflow"],
)
def test_request_time_out_of_range_names_the_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as err:
        datetime_of(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos), field="until")
    assert str(err.value) == "until: must be a time between 0001-01-01 and 9999-12-31 UTC"
    assert [v.field for v in err.value.violations] == ["until"]
