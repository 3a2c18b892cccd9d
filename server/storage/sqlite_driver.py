"""aiosqlite with one thread hop per statement, for SQLAlchemy's `sqlite+aiosqlite` URLs.

aiosqlite runs each sqlite3 call on the connection's own thread and hands the result
back to the event loop. SQLAlchemy's adapter (`sqlalchemy.dialects.sqlite.aiosqlite`)
makes one such call per DB-API step: open a cursor, execute, fetch the rows, close
the cursor, so a primary-key read is four hand-offs and the pool's reset on return
(a rollback, even with no transaction open) a fifth. Each hand-off wakes the thread
and then the loop (a self-pipe write), which on this 2-core machine cost ~60-100 µs
of CPU and was the largest single cost of a REST call on SQLite (py-spy, cProfile:
16 hand-offs per Orchestra start).

Here one statement is one hand-off: the worker thread executes it on a fresh sqlite3
cursor, fetches every row, records `description`, `rowcount` and `lastrowid`, and
closes the cursor before returning, as SQLAlchemy's own asyncpg adapter buffers a
result. A rollback with no transaction open is skipped, exactly as sqlite3 itself
would do nothing. Server-side cursors (`stream_results`) keep aiosqlite's cursor.

Built on SQLAlchemy's adapter classes (pinned in pyproject.toml; `module=` of
`create_async_engine` replaces the DB-API module, a documented parameter) and on
aiosqlite's `Connection._execute` and `_conn`, which its own cursor uses.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid


def _execute(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    """On the connection's thread: the statement's whole result."""
    cursor = connection.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _executemany(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, parameters)
        return cursor.description, [], cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor: the statement, its rows and its counts in one hand-off."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")
    _awaitable_cursor_close = False  # nothing is left open on the thread

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(_execute, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            return await_(self._run(_executemany, operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run(self, step: Any, operation: Any, parameters: Any) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await connection._execute(  # type: ignore[no-untyped-call]
                step, connection._conn, operation, parameters
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor  # type: ignore[assignment]  # a subclass of the declared one

    def rollback(self) -> None:
        # sqlite3's rollback does nothing outside a transaction; the pool resets every
        # returned connection, so skipping the hand-off matters for every read.
        # `in_transaction` reads the handle's autocommit flag, safe from any thread.
        connection = self._connection._connection
        if connection is not None and connection.in_transaction:
            super().rollback()


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module to pass as `module=` for a `sqlite+aiosqlite` URL."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy's adapter does
        return OneHopConnection(self, await_(connection))
