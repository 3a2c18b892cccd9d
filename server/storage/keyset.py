"""A listing spec's keyset page as SQL: order by its sort keys, resume after a position.

`ListingSpec` (domain) names the sort keys by row attribute; here they become
columns of the table. All keys run one direction, so "after the position" is one
row-value comparison (`(a, b) > (:a, :b)`, or `<` when descending), which a
composite index serves, and the page is `LIMIT n + 1` (the extra row says "more").
Never OFFSET.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from server.domain.pagination import ListingSpec


def keyset_select(
    table: sa.Table,
    spec: ListingSpec[Any, Any],
    where: Sequence[sa.ColumnElement[bool]],
    *,
    after: tuple[Any, ...] | None,
    limit: int,
) -> sa.Select[Any]:
    columns = [table.c[key.attribute] for key in spec.sort]
    clauses = list(where)
    if after is not None:
        # Typed binds: SQLite compares the stored text form of a time, so a bound value
        # must be formatted by its column's own type.
        position = sa.tuple_(
            *(sa.literal(value, column.type) for value, column in zip(after, columns, strict=True))
        )
        row = sa.tuple_(*columns)
        clauses.append(row < position if spec.descending else row > position)
    order = [column.desc() if spec.descending else column for column in columns]
    return sa.select(table).where(*clauses).order_by(*order).limit(limit + 1)
