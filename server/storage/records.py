"""Result rows as named tuples, for the hot paths that read many columns of many rows.

SQLAlchemy's `Row` answers `row.job_id` from `__getattr__`, which Python calls only
after the ordinary attribute lookup has failed and built its AttributeError: about
0.5 µs a read on this machine (SQLAlchemy 2.1, compiled extensions). Converting a
leased job for its worker reads ~25 columns, so ~13 µs of a lease's server time per
job went to attribute reads. A named tuple answers the same read from a slot
descriptor in ~60 ns, and building one from a row costs ~0.45 µs. Same attribute
names, same order, still a tuple; `_asdict()` works, `_mapping` does not.
"""

from __future__ import annotations

import functools
import keyword
from collections import namedtuple
from collections.abc import Iterable, Sequence
from typing import Any


def records(keys: Iterable[str], rows: Iterable[Sequence[Any]]) -> list[Any]:
    """`rows` (of a result whose column names are `keys`) as named tuples; the rows
    unchanged when a name is not a Python identifier (no attribute could read it)."""
    cls = _record_class(tuple(keys))
    if cls is None:
        return list(rows)
    new = tuple.__new__
    return [new(cls, tuple(row)) for row in rows]


@functools.lru_cache(maxsize=256)
def _record_class(keys: tuple[str, ...]) -> Any:
    if len(set(keys)) != len(keys) or not all(
        key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("_")
        for key in keys
    ):
        return None
    return namedtuple("Record", keys)
