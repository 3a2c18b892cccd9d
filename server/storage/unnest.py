"""Batch inserts on PostgreSQL as `INSERT .. SELECT .. FROM unnest(...)`, with the
columns that hold one value in every row bound once, as scalars.

A batch insert with one array per column sends a fixed number of bind parameters for
any number of rows, so the statement is prepared once and parsed in microseconds
(River's batch insert does the same). Most columns of a batch hold one value in every
row, though: a batch enqueue's 1,000 jobs share their tenant, status, timestamps and a
dozen NULLs, and its 1,000 `job.enqueued` events share all but their subject. asyncpg
encodes an array element by element (an ABC `isinstance` check and a codec call each,
~0.4 µs), so binding such a column once instead of 1,000 times took a third of the
server's time off a 1,000-job `BatchEnqueueJobs` (bench/jobs.py, batch enqueue).

Which columns are scalars is a property of the batch, so each shape is its own
statement, built once and cached (at most `SHAPES_KEPT` shapes per table; past that,
every column is an array, as before). asyncpg prepares each statement text once per
connection. The rows inserted are the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel.sql.sqltypes import AutoString

SHAPES_KEPT = 32  # statements cached per table, one per set of scalar columns


class UnnestInsert:
    """`INSERT INTO table (columns) SELECT .. FROM unnest(..) [suffix]` for PostgreSQL.

    `row_column` is always bound as an array: it carries the row count, so it must be
    a column whose values differ from row to row (a primary key) or a batch of one row
    still inserts one row. `suffix` follows the SELECT (`ON CONFLICT .. RETURNING ..`).
    """

    def __init__(
        self, table: sa.Table, columns: Sequence[str], *, row_column: str, suffix: str = ""
    ) -> None:
        if row_column not in columns:
            raise ValueError(f"{row_column!r} is not one of the inserted columns")
        self._table = table
        self._columns = tuple(columns)
        self._row_column = row_column
        self._suffix = suffix
        self._statements: dict[frozenset[str], sa.TextClause] = {}

    def bind(self, arrays: Mapping[str, list[Any]]) -> tuple[sa.TextClause, dict[str, Any]]:
        """The statement and its parameters for one batch; `arrays` holds one list per
        column, all of the batch's length (at least one row)."""
        scalars = frozenset(
            name for name in self._columns if name != self._row_column and _one_value(arrays[name])
        )
        statement = self._statements.get(scalars)
        if statement is None:
            if len(self._statements) >= SHAPES_KEPT:
                scalars = frozenset()
                statement = self._statements.get(scalars)
            if statement is None:
                statement = self._statement(scalars)
                self._statements[scalars] = statement
        parameters = {
            name: arrays[name][0] if name in scalars else arrays[name] for name in self._columns
        }
        return statement, parameters

    def _statement(self, scalars: frozenset[str]) -> sa.TextClause:
        unnested = [name for name in self._columns if name not in scalars]
        selected = [f"u.{name}" if name not in scalars else f":{name}" for name in self._columns]
        text = sa.text(
            f"INSERT INTO {self._table.name} ({', '.join(self._columns)}) "
            f"SELECT {', '.join(selected)} "
            f"FROM unnest({', '.join(':' + name for name in unnested)}) "
            f"AS u({', '.join(unnested)})" + (f" {self._suffix}" if self._suffix else "")
        )
        # Typed bind parameters: the asyncpg dialect casts each (`$1::VARCHAR[]`,
        # `$2::INTEGER`), which is how PostgreSQL knows unnest's element types.
        types = {name: _cast_type(self._table.c[name].type) for name in self._columns}
        return text.bindparams(
            *(
                sa.bindparam(name, type_=types[name])
                if name in scalars
                else sa.bindparam(name, type_=postgresql.ARRAY(types[name]))
                for name in self._columns
            )
        )


def _one_value(values: list[Any]) -> bool:
    """Whether every value is stored as the first is: equal in Python (a C-level count,
    not a Python loop), which for the column types inserted this way (text, integers,
    floats, timestamps with time zone) means stored equal, except for the zeros of a
    float column: -0.0 == 0.0, but float8 keeps the sign."""
    first = values[0]
    if values.count(first) != len(values):
        return False
    if type(first) is float and first == 0.0:
        sign = math.copysign(1.0, first)
        return all(math.copysign(1.0, value) == sign for value in values)
    return True


def _cast_type(column_type: Any) -> Any:
    """The type a bind parameter is cast to: a string type without its length. Cast
    to `VARCHAR(200)` (or `VARCHAR(200)[]`), PostgreSQL cuts a longer value short
    without a word; cast to `VARCHAR`, the insert's own assignment to the column
    refuses it, whichever way the value was bound."""
    # SQLModel's AutoString is a TypeDecorator over String(length) that converts nothing.
    impl = column_type.impl if isinstance(column_type, AutoString) else column_type
    if isinstance(impl, sa.String) and impl.length is not None:
        return sa.String(collation=impl.collation)
    return column_type
