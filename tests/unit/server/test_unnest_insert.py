"""`UnnestInsert` (storage/unnest.py): which columns a batch binds once, the row
column always an array, and the bounded set of statement shapes."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from server.storage import unnest
from server.storage.unnest import UnnestInsert

_table = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("thing_id", sa.String, primary_key=True),
    sa.Column("tenant_id", sa.String),
    sa.Column("size", sa.Integer),
)
COLUMNS = ("thing_id", "tenant_id", "size")


def test_columns_with_one_value_are_bound_once_and_the_rest_unnested() -> None:
    insert = UnnestInsert(_table, COLUMNS, row_column="thing_id", suffix="RETURNING thing_id")

    statement, parameters = insert.bind(
        {"thing_id": ["a", "b", "c"], "tenant_id": ["t", "t", "t"], "size": [1, 2, 1]}
    )

    assert str(statement) == (
        "INSERT INTO things (thing_id, tenant_id, size) "
        "SELECT u.thing_id, :tenant_id, u.size FROM unnest(:thing_id, :size) "
        "AS u(thing_id, size) RETURNING thing_id"
    )
    assert parameters == {"thing_id": ["a", "b", "c"], "tenant_id": "t", "size": [1, 2, 1]}


def test_the_row_column_stays_an_array_for_a_single_row() -> None:
    insert = UnnestInsert(_table, COLUMNS, row_column="thing_id")

    statement, parameters = insert.bind({"thing_id": ["a"], "tenant_id": ["t"], "size": [3]})

    assert str(statement) == (
        "INSERT INTO things (thing_id, tenant_id, size) "
        "SELECT u.thing_id, :tenant_id, :size FROM unnest(:thing_id) AS u(thing_id)"
    )
    assert parameters == {"thing_id": ["a"], "tenant_id": "t", "size": 3}


def test_values_equal_in_python_are_one_value_bound_as_the_first() -> None:
    """Python equality decides: for the column types inserted this way (text,
    integers, floats, timestamps with time zone) equal values are stored equal (but
    the zeros of a float: below)."""
    insert = UnnestInsert(_table, COLUMNS, row_column="thing_id")

    _, parameters = insert.bind({"thing_id": ["a", "b"], "tenant_id": ["t", "t"], "size": [1, 1.0]})

    assert parameters["size"] == 1 and type(parameters["size"]) is int


def test_zeros_of_opposite_sign_are_not_one_value() -> None:
    """-0.0 == 0.0 in Python, but float8 stores the sign: each row keeps its own."""
    floats = sa.Table("floats", sa.MetaData(), sa.Column("id", sa.String), sa.Column("x", sa.Float))
    insert = UnnestInsert(floats, ("id", "x"), row_column="id")

    _, mixed = insert.bind({"id": ["a", "b"], "x": [0.0, -0.0]})
    _, same = insert.bind({"id": ["a", "b"], "x": [-0.0, -0.0]})

    assert mixed["x"] == [0.0, -0.0]
    assert same["x"] == -0.0 and str(same["x"]) == "-0.0"


def test_string_columns_are_cast_without_their_length() -> None:
    """Cast to VARCHAR(n), PostgreSQL silently cuts a longer value; cast to VARCHAR,
    the insert refuses it, as a scalar and as an array alike."""
    sized = sa.Table(
        "sized", sa.MetaData(), sa.Column("id", sa.String(36)), sa.Column("owner", sa.String(200))
    )
    insert = UnnestInsert(sized, ("id", "owner"), row_column="id")

    scalar, _ = insert.bind({"id": ["a", "b"], "owner": ["o", "o"]})
    arrays, _ = insert.bind({"id": ["a", "b"], "owner": ["o", "p"]})

    dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
    assert "SELECT u.id, $1::VARCHAR FROM unnest($2::VARCHAR[])" in str(
        scalar.compile(dialect=dialect)
    )
    assert "FROM unnest($1::VARCHAR[], $2::VARCHAR[])" in str(arrays.compile(dialect=dialect))


def test_one_statement_per_shape_and_every_column_unnested_past_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(unnest, "SHAPES_KEPT", 1)
    insert = UnnestInsert(_table, COLUMNS, row_column="thing_id")
    shared: dict[str, list[Any]] = {"thing_id": ["a", "b"], "tenant_id": ["t", "t"], "size": [1, 1]}

    first, _ = insert.bind(shared)
    again, _ = insert.bind(shared)
    other, parameters = insert.bind({**shared, "size": [1, 2]})

    assert again is first
    assert "unnest(:thing_id, :tenant_id, :size)" in str(other)
    assert parameters == {"thing_id": ["a", "b"], "tenant_id": ["t", "t"], "size": [1, 2]}


def test_a_row_column_that_is_not_inserted_is_refused() -> None:
    with pytest.raises(ValueError, match="'nope' is not one of the inserted columns"):
        UnnestInsert(_table, COLUMNS, row_column="nope")
