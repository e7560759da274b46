"""Pages served at once share the statement that reads the catalogue version and cart counts,
and none of them ever gets an answer from a statement that started before it arrived."""
from __future__ import annotations

import asyncio

import pytest

from shop.catalog import cache


class Database:
    """Answers each read with a new version, after a round trip the test controls."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []
        self.version = 0
        self.arrived = asyncio.Event()
        self.answer = asyncio.Event()
        self.fail: Exception | None = None

    async def read(self, tokens: list[str]) -> tuple[int, dict[str, int]]:
        self.reads.append(sorted(tokens))
        self.version += 1  # a commit lands between any two reads
        version = self.version
        self.arrived.set()
        await self.answer.wait()
        self.answer.clear()
        if self.fail is not None:
            raise self.fail
        return version, {token: len(token) for token in tokens}


@pytest.fixture()
def database(monkeypatch: pytest.MonkeyPatch) -> Database:
    database = Database()
    monkeypatch.setattr(cache, "_read_shared", database.read)
    return database


def test_pages_arriving_together_share_one_statement(database: Database) -> None:
    async def run() -> list[tuple[int, int]]:
        shared = cache._SharedReads()
        pages = [asyncio.create_task(shared.read(token)) for token in ("", "ab", "abc", "ab")]
        await database.arrived.wait()
        database.answer.set()
        return await asyncio.gather(*pages)

    assert asyncio.run(run()) == [(1, 0), (1, 2), (1, 3), (1, 2)]
    assert database.reads == [["ab", "abc"]]


def test_a_page_arriving_during_a_read_waits_for_the_next_one(database: Database) -> None:
    async def run() -> tuple[tuple[int, int], tuple[int, int]]:
        shared = cache._SharedReads()
        first = asyncio.create_task(shared.read("a"))
        await database.arrived.wait()  # the first read is at the database
        database.arrived.clear()
        late = asyncio.create_task(shared.read("bb"))
        await asyncio.sleep(0)
        database.answer.set()  # the first read answers: version 1, from before "bb" came
        await database.arrived.wait()
        database.answer.set()
        return await first, await late

    assert asyncio.run(run()) == ((1, 1), (2, 2))
    assert database.reads == [["a"], ["bb"]]


def test_a_failed_read_fails_every_page_that_waited_for_it(database: Database) -> None:
    async def run() -> list[object]:
        shared = cache._SharedReads()
        pages = [asyncio.create_task(shared.read(token)) for token in ("a", "b")]
        await database.arrived.wait()
        database.fail = ConnectionError("database went away")
        database.answer.set()
        return await asyncio.gather(*pages, return_exceptions=True)

    assert [type(answer) for answer in asyncio.run(run())] == [ConnectionError, ConnectionError]


def test_a_page_that_left_does_not_stop_the_others(database: Database) -> None:
    async def run() -> tuple[int, int]:
        shared = cache._SharedReads()
        gone = asyncio.create_task(shared.read("a"))
        stays = asyncio.create_task(shared.read("bb"))
        await database.arrived.wait()
        gone.cancel()  # the customer closed the tab
        database.answer.set()
        return await stays

    assert asyncio.run(run()) == (1, 2)
