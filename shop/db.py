"""Database engines from `SHOP_DATABASE_URL`, bound to every table of the app."""
from __future__ import annotations

import asyncio
import sqlite3
import weakref
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, dict_factory
from piccolo.table import Table

# Concurrent writers wait this long for SQLite's lock instead of failing with "locked".
SQLITE_BUSY_TIMEOUT_S = 30


# A read that meets a lock (rare in WAL mode: recovery, a checkpoint) gives up this fast and
# takes the ordinary, threaded path instead of holding up the event loop.
SQLITE_READER_TIMEOUT_S = 0.05


class FastReadSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine, except that a SELECT outside a transaction runs on one kept
    connection in the event loop's own thread. In WAL mode a reader never waits for a writer
    and these reads take tens of microseconds; the stock path opens a connection, a thread and
    six thread hand-offs per query (each can wait the GIL's 5 ms switch interval under load),
    which held a page to ~120 req/s. Writes and transactions keep the threaded path, so a
    writer waiting for the lock never blocks the loop."""

    __slots__ = ("_reader", "_writer_locks")

    def __init__(self, path: str, **connection_kwargs: Any) -> None:
        super().__init__(path=path, **connection_kwargs)
        self._reader: sqlite3.Connection | None = None
        self._writer_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """This process's writers take turns here, so they queue in the event loop instead of
        in SQLite's busy handler, which polls with sleeps of up to 100 ms and, with 32 writers,
        turned a checkout into seconds. Inside a transaction there is nothing more to take.
        Other processes still meet SQLite's own lock (and its busy timeout)."""
        if self.current_transaction.get() is not None:
            yield
            return
        loop = asyncio.get_running_loop()
        lock = self._writer_locks.get(loop)
        if lock is None:
            lock = self._writer_locks[loop] = asyncio.Lock()
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_S):
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked (waited for this process's writers)") from None
        try:
            yield
        finally:
            lock.release()

    def _read(self, query: str, args: list[Any]) -> list[dict[str, Any]]:
        if self._reader is None:
            reader = sqlite3.connect(**{**self.connection_kwargs, "timeout": SQLITE_READER_TIMEOUT_S},
                                     check_same_thread=False)
            reader.row_factory = dict_factory
            self._reader = reader
        return self._reader.execute(query, args).fetchall()

    async def _run_in_new_connection(self, query: str, args: list[Any] | None = None,
                                     query_type: str = "generic", table: type[Table] | None = None) -> Any:
        if query.lstrip()[:6].upper() == "SELECT":
            try:
                return self._read(query, args or [])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            return await super()._run_in_new_connection(query, args, query_type, table)
        async with self.writing():
            return await super()._run_in_new_connection(query, args, query_type, table)


def make_engine(database_url: str) -> Engine:
    """An engine for `sqlite:///PATH` or `postgres://user:pass@host:port/db`."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        return FastReadSQLiteEngine(path=str(path), timeout=SQLITE_BUSY_TIMEOUT_S)
    if database_url.startswith(("postgres://", "postgresql://")):
        return PostgresEngine(config={"dsn": database_url})
    raise ValueError("unsupported database URL (use sqlite:/// or postgres://)")


def bind_tables(engine: Engine, tables: Iterable[type[Table]]) -> None:
    """Point every table at `engine`, so the app never depends on a global config module."""
    for table in tables:
        table._meta._db = engine
        # Foreign keys resolve their target's engine through the target table itself.


async def prepare_sqlite(engine: Engine) -> None:
    """WAL lets readers run beside one writer; it is a property of the database file."""
    if isinstance(engine, SQLiteEngine):
        await engine.run_ddl("PRAGMA journal_mode=WAL;")


async def database_ok(engine: Engine) -> bool:
    try:
        rows = await engine.run_ddl("SELECT 1 AS ok;")
    except Exception:  # any driver error means "not healthy"; /healthz reports it
        return False
    return bool(rows) and rows[0].get("ok") == 1


@asynccontextmanager
async def write_transaction(engine: Engine) -> AsyncIterator[Any]:
    """A transaction that takes the write lock up front on SQLite (no upgrade deadlocks; this
    process's writers queue first, see FastReadSQLiteEngine.writing) and is a plain transaction
    on PostgreSQL, where rows are locked explicitly."""
    if isinstance(engine, SQLiteEngine):
        from piccolo.engine.sqlite import TransactionType

        queue = engine.writing() if isinstance(engine, FastReadSQLiteEngine) else nullcontext()
        async with queue, engine.transaction(transaction_type=TransactionType.immediate) as transaction:
            yield transaction
        return
    async with engine.transaction() as transaction:
        yield transaction


def is_postgres(engine: Engine) -> bool:
    return isinstance(engine, PostgresEngine)


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique-constraint error from either driver."""
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "UniqueViolationError" or ("unique constraint failed" in text) or "duplicate key" in text


@asynccontextmanager
async def unique_or(error: Callable[[], Exception]) -> AsyncIterator[None]:
    """Turn a unique-constraint violation in the block (a race past the friendly pre-check) into
    `error()`, the message the form shows; anything else goes through."""
    try:
        yield
    except Exception as exc:
        if is_unique_violation(exc):
            raise error() from None
        raise
