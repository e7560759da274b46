"""Database engines from `SHOP_DATABASE_URL`, bound to every table of the app."""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.table import Table

from shop.sqlite_engine import LoopSQLiteEngine

# Row ids are PostgreSQL serials (32-bit): a larger number can name no row, and the driver
# refuses to send it at all.
MAX_ROW_ID = 2**31 - 1


def make_engine(database_url: str) -> Engine:
    """An engine for `sqlite:///PATH` or `postgres://user:pass@host:port/db`."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        return LoopSQLiteEngine(path=str(path))
    if database_url.startswith(("postgres://", "postgresql://")):
        return PostgresEngine(config={"dsn": database_url})
    raise ValueError("unsupported database URL (use sqlite:/// or postgres://)")


async def _nothing_to_reset(connection: object) -> None:
    """What a pooled PostgreSQL connection needs before its next use: nothing the shop leaves.

    asyncpg's default sends a reset query (advisory unlocks, CLOSE ALL, UNLISTEN, RESET ALL)
    each time a connection goes back to the pool: a second round trip for every statement. The
    shop sets no session state (no SET, LISTEN, advisory locks or cursors), and asyncpg rolls
    back a transaction left open before calling this."""


async def start_pool(engine: PostgresEngine, size: int) -> None:
    await engine.start_connection_pool(min_size=1, max_size=size, reset=_nothing_to_reset)


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


def write_transaction(engine: Engine):  # type: ignore[no-untyped-def]
    """A transaction that takes the write lock up front on SQLite (no upgrade deadlocks; this
    process's writers queue first, see LoopSQLiteEngine.take_turn) and is a plain transaction
    on PostgreSQL, where rows are locked explicitly."""
    if isinstance(engine, SQLiteEngine):
        from piccolo.engine.sqlite import TransactionType

        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


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
