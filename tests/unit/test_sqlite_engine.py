"""The SQLite engine that runs statements in the event loop: transactions commit or roll back
whole, the kept writer is left clean after any failure, and a write lock held by another
process is waited for without stopping the loop."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from piccolo.columns import Boolean, Integer, Varchar
from piccolo.engine.sqlite import TransactionType
from piccolo.table import Table

from shop.db import write_transaction
from shop.sqlite_engine import LoopSQLiteEngine


class Note(Table, tablename="engine_note"):
    text = Varchar(length=50, unique=True)
    number = Integer(default=0)


@pytest.fixture()
def engine(tmp_path: Path) -> LoopSQLiteEngine:
    engine = LoopSQLiteEngine(path=str(tmp_path / "engine.db"))
    Note._meta._db = engine

    async def create() -> None:
        await engine.run_ddl("PRAGMA journal_mode=WAL;")
        await Note.create_table()

    asyncio.run(create())
    return engine


def texts() -> list[str]:
    return [row["text"] for row in Note.select(Note.text).order_by(Note.id).run_sync()]


def test_a_transaction_commits_whole_or_not_at_all(engine: LoopSQLiteEngine) -> None:
    async def scenario() -> None:
        async with write_transaction(engine):
            await Note.insert(Note(text="a"), Note(text="b"))
        with pytest.raises(RuntimeError):
            async with write_transaction(engine):
                await Note.insert(Note(text="c"))
                raise RuntimeError("the block fails after a write")
        # A failed statement inside a transaction (unique violation) rolls it all back too.
        with pytest.raises(sqlite3.IntegrityError):
            async with write_transaction(engine):
                await Note.insert(Note(text="d"))
                await Note.insert(Note(text="a"))
        # The kept writer is clean: the next transaction works.
        async with write_transaction(engine):
            await Note.insert(Note(text="e"))

    asyncio.run(scenario())
    assert texts() == ["a", "b", "e"]


def test_reads_inside_a_transaction_see_its_writes_and_others_see_them_after_commit(
        engine: LoopSQLiteEngine) -> None:
    seen: dict[str, list[str]] = {}

    async def scenario() -> None:
        async with write_transaction(engine):
            await Note.insert(Note(text="x"))
            seen["inside"] = [r["text"] for r in await Note.select(Note.text)]
            seen["outside"] = [r["text"] for r in await asyncio.create_task(_read_outside())]
        seen["after"] = [r["text"] for r in await Note.select(Note.text)]

    async def _read_outside() -> list[dict]:
        engine.current_transaction.set(None)  # a request that is not in the transaction
        return await Note.select(Note.text)

    asyncio.run(scenario())
    assert seen == {"inside": ["x"], "outside": [], "after": ["x"]}


def test_writers_of_one_process_take_turns(engine: LoopSQLiteEngine) -> None:
    Note.insert(Note(text="counter")).run_sync()

    async def bump() -> None:
        async with write_transaction(engine):
            row = await Note.select(Note.number).where(Note.text == "counter").first()
            await asyncio.sleep(0)  # another writer would interleave here without the turn
            await Note.update({Note.number: row["number"] + 1}).where(Note.text == "counter")

    async def scenario() -> None:
        await asyncio.gather(*(bump() for _ in range(50)))

    asyncio.run(scenario())
    assert Note.select(Note.number).first().run_sync()["number"] == 50


def test_a_lock_held_by_another_process_is_waited_for_while_the_loop_runs_on(
        engine: LoopSQLiteEngine, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "engine.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    other.execute("INSERT INTO engine_note (text, number) VALUES ('theirs', 0)")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        started = time.monotonic()
        await Note.insert(Note(text="ours"))  # outside a transaction
        async with engine.transaction(transaction_type=TransactionType.immediate):
            await Note.insert(Note(text="ours too"))
        stop.set()
        await task
        return time.monotonic() - started

    waited = asyncio.run(scenario())
    other.close()
    assert waited >= 0.25  # it did wait for the other writer...
    assert ticks >= 10  # ...without holding up the rest of the loop
    assert texts() == ["theirs", "ours", "ours too"]


def test_each_event_loop_has_its_own_writer(engine: LoopSQLiteEngine) -> None:
    """Test clients run the app on loops in other threads: their transactions must not share a
    connection (one's BEGIN inside the other's transaction would fail)."""
    errors: list[BaseException] = []

    def writer(text: str) -> None:
        async def run() -> None:
            for n in range(20):
                async with write_transaction(engine):
                    await Note.insert(Note(text=f"{text}{n}"))
                    await asyncio.sleep(0.001)
        try:
            asyncio.run(run())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("p", "q")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(texts()) == 40


def test_a_commit_waits_for_a_reader_of_a_file_without_wal(tmp_path: Path) -> None:
    """COMMIT runs in a thread while the loop reads: without WAL a read holds the lock COMMIT
    needs for a moment, and the commit is tried again rather than failing."""
    path = tmp_path / "journal.db"
    sqlite3.connect(path).execute("CREATE TABLE engine_note (id INTEGER PRIMARY KEY, text VARCHAR(50), number INTEGER)")
    engine = LoopSQLiteEngine(path=str(path))
    Note._meta._db = engine

    async def run() -> None:
        writer = engine.writer()
        writer.execute("PRAGMA journal_mode=DELETE")  # as a file the engine has not set up

        async def write(n: int) -> None:
            async with write_transaction(engine):
                await Note.insert(Note(text=f"n{n}", number=n))

        async def read() -> None:
            for _ in range(200):
                await Note.select(Note.id).run()
                await asyncio.sleep(0)

        await asyncio.gather(read(), *(write(n) for n in range(30)))

    asyncio.run(run())
    assert sorted(texts()) == sorted(f"n{n}" for n in range(30))


def test_the_writer_puts_the_file_in_wal_mode(tmp_path: Path) -> None:
    engine = LoopSQLiteEngine(path=str(tmp_path / "fresh.db"))

    async def mode() -> str:
        return engine.writer().execute("PRAGMA journal_mode").fetchone()["journal_mode"]

    assert asyncio.run(mode()) == "wal"


def test_integer_and_boolean_columns_read_back_as_piccolo_reads_them(engine: LoopSQLiteEngine) -> None:
    class Flagged(Table, tablename="engine_flagged"):
        number = Integer(default=0)
        flag = Boolean(default=False)

    Flagged._meta._db = engine
    Flagged.create_table().run_sync()
    # What SQLite may hold in such columns: plain values, and text that Piccolo reads as a number.
    writer = sqlite3.connect(engine.path)
    writer.executemany("INSERT INTO engine_flagged (number, flag) VALUES (?, ?)",
                       [(7, 1), (-12, 0), (2**63 - 1, 1), ("3.0", 0)])
    writer.commit()
    writer.close()
    rows = Flagged.select(Flagged.number, Flagged.flag).order_by(Flagged.id).run_sync()
    assert rows == [{"number": 7, "flag": True}, {"number": -12, "flag": False},
                    {"number": 2**63 - 1, "flag": True}, {"number": 3, "flag": False}]
    assert all(type(row["number"]) is int and type(row["flag"]) is bool for row in rows)
