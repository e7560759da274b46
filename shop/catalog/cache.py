"""Catalogue reads kept per process, for as long as the catalogue version stays the same.

Database triggers bump `catalog_version.version` in the same transaction as every insert,
update or delete of a product or category, whoever writes: staff, an order reserving stock, a
webhook moving it, another worker process, `shop seed`. Every storefront request reads the
version first (in the statement that counts the cart, shared on PostgreSQL by the pages that
arrived before it started), so no process ever serves a price or a stock level older than the
latest committed write. A value is stored only under the version
read before it was computed, so a value is never newer-keyed than the data it came from."""
from __future__ import annotations

import asyncio
import json
import weakref
from collections import OrderedDict
from typing import Awaitable, Callable, Hashable, TypeVar

from shop.cart.services import ITEM_COUNT_SQL
from shop.cart.tables import CartLine
from shop.db import is_postgres
from shop.sql import Statement
from shop.web.page_cache import PageStore

T = TypeVar("T")
MAX_ENTRIES = 64  # the few reads kept beside the pages (categories, featured products)


class CatalogueCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._version: int | None = None
        self._entries: OrderedDict[Hashable, object] = OrderedDict()
        self._pages = PageStore()

    def _see(self, version: int) -> None:
        if version != self._version:
            self._entries.clear()
            # A new store: a request still rendering from the older version keeps into the old one.
            self._pages = PageStore()
            self._version = version

    def pages(self, version: int) -> PageStore:
        """The pages rendered from the catalogue at `version`, emptied whenever it changes."""
        self._see(version)
        return self._pages

    async def get(self, version: int, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The value for `key` at catalogue `version`, computed (and kept) when missing."""
        self._see(version)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]  # type: ignore[return-value]
        value = await compute()
        if self._version == version:  # not if a request meanwhile saw a newer version
            self._entries[key] = value
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value


_VERSION_AND_CART_COUNT = Statement(
    CartLine, f"SELECT (SELECT version FROM catalog_version WHERE id = 1) AS version, ({ITEM_COUNT_SQL}) AS n")
# PostgreSQL: the catalogue version (token NULL), then each cart's item count, for the tokens
# in a JSON array.
_SHARED_READ = Statement(CartLine, """
    SELECT NULL AS token, version AS n FROM catalog_version WHERE id = 1
    UNION ALL
    SELECT cart.token, SUM(cart_line.quantity) FROM cart JOIN cart_line ON cart_line.cart = cart.id
    WHERE cart.token IN (SELECT json_array_elements_text({}::json)) GROUP BY cart.token""")


async def version_and_cart_count(cart_token: str | None) -> tuple[int, int]:
    """The catalogue version and the number of items in the cart, read after this request
    arrived: every storefront page needs both, and this is the only statement a page served
    from the cache runs. On PostgreSQL the pages being served at once share one statement."""
    if is_postgres(CartLine._meta.db):
        return await _SharedReads.of_this_loop().read(cart_token or "")
    row = await _VERSION_AND_CART_COUNT.first(cart_token or "")
    assert row is not None  # a SELECT of two subqueries always has its one row
    return int(row["version"]), int(row["n"])


class _SharedReads:
    """One statement for the version and cart counts of every page waiting for them.

    A page that arrives while a read is under way waits for the next read, which starts after
    it arrived: like its own statement, it can never see a catalogue older than the last commit
    before it came. A round trip to PostgreSQL costs a worker about 130 us of CPU and the
    database its share of the cores; a busy worker now pays it once for many pages. (SQLite
    answers in the loop without waiting, so there a page never has another to share with.)"""

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedReads] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[tuple[int, int]]]] = {}
        self._reading = False

    @classmethod
    def of_this_loop(cls) -> _SharedReads:
        loop = asyncio.get_running_loop()
        shared = cls._per_loop.get(loop)
        if shared is None:
            shared = cls._per_loop[loop] = cls()
        return shared

    async def read(self, token: str) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._waiting.setdefault(token, []).append(answer)
        if not self._reading:
            self._reading = True
            loop.create_task(self._rounds())
        return await answer

    async def _rounds(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    version, counts = await _read_shared([token for token in batch if token])
                except Exception as exc:  # each waiting page gets the error its own statement would have
                    for answers in batch.values():
                        for answer in answers:
                            if not answer.done():
                                answer.set_exception(exc)
                    continue
                for token, answers in batch.items():
                    for answer in answers:
                        if not answer.done():
                            answer.set_result((version, counts.get(token, 0)))
        finally:
            self._reading = False


async def _read_shared(tokens: list[str]) -> tuple[int, dict[str, int]]:
    rows = await _SHARED_READ.rows(json.dumps(tokens))
    version = next(int(row["n"]) for row in rows if row["token"] is None)
    return version, {row["token"]: int(row["n"]) for row in rows if row["token"] is not None}
