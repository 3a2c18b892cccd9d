"""`records` (storage/records.py): result rows as named tuples with the same names,
values and order; rows whose names no attribute could read are left as they are."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from server.storage.records import records


@pytest.fixture
def conn() -> Iterator[sa.Connection]:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def test_rows_become_named_tuples_with_the_columns_names_and_values(conn: sa.Connection) -> None:
    result = conn.execute(
        sa.text(
            "SELECT 'j-1' AS job_id, 3 AS attempts, NULL AS lease_id UNION ALL "
            "SELECT 'j-2', 4, 'l-2'"
        )
    )

    rows = records(result.keys(), result.all())

    assert [(row.job_id, row.attempts, row.lease_id) for row in rows] == [
        ("j-1", 3, None),
        ("j-2", 4, "l-2"),
    ]
    assert rows[1] == ("j-2", 4, "l-2")
    assert rows[0]._asdict() == {"job_id": "j-1", "attempts": 3, "lease_id": None}
    assert type(rows[0]) is type(rows[1])


@pytest.mark.parametrize(
    "select",
    [
        'SELECT 1 AS "not a name"',
        "SELECT 1 AS class",
        "SELECT 1 AS _hidden",
        "SELECT 1 AS a, 2 AS a",
    ],
)
def test_rows_whose_names_are_not_attributes_are_left_as_rows(
    conn: sa.Connection, select: str
) -> None:
    result = conn.execute(sa.text(select))
    original = result.all()

    rows = records(result.keys(), original)

    assert rows == original and all(isinstance(row, sa.Row) for row in rows)
