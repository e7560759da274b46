"""Piccolo's SQLite engine, run on kept connections in the event loop's own thread.

Piccolo opens a connection and a thread per query (per transaction inside one), with several
thread hand-offs per statement; each waits for the GIL, which under load the event loop holds
for up to its 5 ms switch interval. Writers take turns, so those waits added up in series:
a checkout (five short transactions) took most of a second with 32 customers at once.

Here every statement runs where the request runs, on connections kept per event loop:
- SELECTs outside a transaction on a reader connection. In WAL mode a reader never waits for
  the writer; a read that meets a lock anyway (recovery) takes Piccolo's threaded path.
- Writes and transactions on a writer connection, one transaction at a time per process (they
  queue on an asyncio lock). Its busy handler is off, so the loop never sleeps inside SQLite:
  when another process holds the write lock, the loop polls for it between other requests.
Statements take tens of microseconds. A commit is a WAL append and one fsync (the database
stays durable on power loss): that wait runs in a thread, so the loop goes on meanwhile."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import weakref
from typing import Any, Callable, Generator

from piccolo.engine.sqlite import (SQLiteEngine, SQLiteTransaction, TransactionType, convert_boolean_out,
                                   convert_int_out, dict_factory)
from piccolo.table import Table

# How long a writer waits for another process's write lock (and for this process's queue).
SQLITE_BUSY_TIMEOUT_S = 30
# A read that meets a lock gives up this fast and takes the threaded path instead.
SQLITE_READER_TIMEOUT_S = 0.05
_FIRST_POLL_S, _LONGEST_POLL_S = 0.001, 0.05


# Piccolo's converters for INTEGER and BOOLEAN columns decode every value to text and (for
# integers) go through Decimal: 2 us a value, a tenth of an add to cart (a cart's lines alone
# are 48 values). These give the same results, taking Piccolo's own path only for a value that
# is not plain (an INTEGER column holding '1.0').
def _int_out(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return convert_int_out(value)


def _boolean_out(value: bytes) -> bool:
    return value == b"1" if isinstance(value, bytes) else convert_boolean_out(value)


sqlite3.register_converter("INTEGER", _int_out)
sqlite3.register_converter("BOOLEAN", _boolean_out)


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


async def _when_unlocked(statement: Callable[[], Any], commits: bool = False) -> Any:
    """Run `statement`; while another process holds the lock, retry it between other work.
    Only statements that fail without effect when the lock is held come here (BEGIN, COMMIT,
    and a single statement outside a transaction, which SQLite rolls back whole). One that
    `commits` waits for the disk, so it runs in a thread while the loop serves other requests."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = _FIRST_POLL_S
    while True:
        try:
            return await asyncio.to_thread(statement) if commits else statement()
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_POLL_S)


class _Cursor:
    """The part of aiosqlite's cursor Piccolo uses, over a finished sqlite3 cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int) -> list[Any]:
        return self._cursor.fetchmany(size)

    async def execute(self, query: str, args: Any = ()) -> _Cursor:
        self._cursor.execute(query, args)
        return self

    async def close(self) -> None:
        self._cursor.close()


class _Executed:
    """What aiosqlite's `execute` returns: awaitable, and a context manager closing the cursor.
    The statement has already run when this exists."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = _Cursor(cursor)

    def __await__(self) -> Generator[Any, None, _Cursor]:
        return self._result().__await__()

    async def _result(self) -> _Cursor:
        return self._cursor

    async def __aenter__(self) -> _Cursor:
        return self._cursor

    async def __aexit__(self, *exc_info: object) -> None:
        await self._cursor.close()


class _LoopConnection:
    """The part of aiosqlite's connection Piccolo's transactions use, over the kept writer."""

    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @property
    def row_factory(self) -> Any:
        return self._connection.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._connection.row_factory = factory

    def execute(self, query: str, args: Any = ()) -> _Executed:
        if query == "PRAGMA foreign_keys = 1":  # Piccolo sends it before every statement; set once
            return _Executed(self._connection.cursor())
        return _Executed(self._connection.execute(query, args))

    async def close(self) -> None:
        """The connection is kept; a transaction left open by a failure is rolled back."""
        if self._connection.in_transaction:
            self._connection.rollback()


class LoopTransaction(SQLiteTransaction):
    """A Piccolo transaction on the kept writer, holding this process's writer turn throughout."""

    async def __aenter__(self) -> LoopTransaction:
        if self._parent is not None:
            return self._parent
        await self.engine.take_turn()  # type: ignore[attr-defined]
        try:
            return await super().__aenter__()  # type: ignore[return-value]
        except BaseException:
            self.engine.give_turn()  # type: ignore[attr-defined]
            raise

    async def get_connection(self) -> _LoopConnection:
        return _LoopConnection(self.engine.writer())  # type: ignore[attr-defined]

    async def begin(self) -> None:
        connection = self.engine.writer()  # type: ignore[attr-defined]
        await _when_unlocked(lambda: connection.execute(f"BEGIN {self.transaction_type.value}"))

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        connection = self.engine.writer()  # type: ignore[attr-defined]
        try:
            if exception is None and not self._committed and not self._rolled_back:
                # COMMIT waits for the disk (fsync): in a thread, so the loop serves other requests.
                # Without WAL a reader of this process may hold the lock COMMIT needs for a moment;
                # a COMMIT refused for that leaves the transaction open, to be tried again.
                await _when_unlocked(lambda: connection.execute("COMMIT"), commits=True)
        finally:
            # Whatever failed (the block, or COMMIT itself), the kept connection leaves clean.
            if connection.in_transaction:
                connection.rollback()
            self.engine.current_transaction.reset(self.context)
            self.engine.give_turn()  # type: ignore[attr-defined]
        return exception is None


class LoopSQLiteEngine(SQLiteEngine):
    __slots__ = ("_readers", "_writers", "_turns")

    def __init__(self, path: str, **connection_kwargs: Any) -> None:
        super().__init__(path=path, timeout=SQLITE_BUSY_TIMEOUT_S, **connection_kwargs)
        # Per event loop: a test client runs the app on a loop in another thread, and two loops
        # must not share a connection's transaction.
        self._readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, sqlite3.Connection] = (
            weakref.WeakKeyDictionary())
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, sqlite3.Connection] = (
            weakref.WeakKeyDictionary())
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())

    def _connect(self, store: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, sqlite3.Connection],
                 timeout_s: float) -> sqlite3.Connection:
        loop = asyncio.get_running_loop()
        connection = store.get(loop)
        if connection is None:
            # isolation_level None: BEGIN and COMMIT are only ever the ones Piccolo sends.
            connection = sqlite3.connect(**{**self.connection_kwargs, "timeout": timeout_s,
                                            "check_same_thread": False, "isolation_level": None})
            connection.row_factory = dict_factory
            connection.execute("PRAGMA foreign_keys = 1")
            if store is self._writers:
                # WAL (kept in the file): readers never wait for the writer, nor it for them.
                # Also set at start-up; here so that commands and tests get it too.
                with contextlib.suppress(sqlite3.OperationalError):
                    connection.execute("PRAGMA journal_mode=WAL")
            store[loop] = connection
        return connection

    def reader(self) -> sqlite3.Connection:
        return self._connect(self._readers, SQLITE_READER_TIMEOUT_S)

    def writer(self) -> sqlite3.Connection:
        return self._connect(self._writers, 0)

    def _turn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = asyncio.Lock()
        return turn

    async def take_turn(self) -> None:
        """This process's turn to write: one transaction (or lone write) at a time on the writer."""
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_S):
                await self._turn().acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked (waited for this process's writers)") from None

    def give_turn(self) -> None:
        self._turn().release()

    def transaction(self, transaction_type: TransactionType = TransactionType.deferred,
                    allow_nested: bool = True) -> LoopTransaction:
        return LoopTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)

    async def _run_in_new_connection(self, query: str, args: list[Any] | None = None,
                                     query_type: str = "generic", table: type[Table] | None = None) -> Any:
        args = args or []
        if query.lstrip()[:6].upper() == "SELECT":
            try:
                return self.reader().execute(query, args).fetchall()
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
            return await super()._run_in_new_connection(query, args, query_type, table)
        # One statement outside a transaction is its own transaction (autocommit): when the lock
        # is held elsewhere it fails whole, so trying again is safe.
        await self.take_turn()
        try:
            writer = self.writer()
            return await _when_unlocked(lambda: writer.execute(query, args).fetchall(), commits=True)
        finally:
            self.give_turn()
