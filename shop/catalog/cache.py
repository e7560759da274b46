"""Catalogue reads kept per process, for as long as the catalogue version stays the same.

Database triggers bump `catalog_version.version` in the same transaction as every insert,
update or delete of a product or category, whoever writes: staff, an order reserving stock, a
webhook moving it, another worker process, `shop seed`. Every storefront request reads the
version first (in the statement that counts the cart), so no process ever serves a price or a
stock level older than the latest committed write. A value is stored only under the version
read before it was computed, so a value is never newer-keyed than the data it came from."""
from __future__ import annotations

from collections import OrderedDict
from typing import Awaitable, Callable, Hashable, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 2048  # bounded: keys include customers' search words and page numbers
MAX_FRAGMENTS = 256  # rendered HTML, up to tens of kB each (a grid of 24 cards)


class FragmentStore(OrderedDict[Hashable, str]):
    """Rendered HTML by key, the oldest dropped beyond `max_entries` (search words are keys)."""

    def __init__(self, max_entries: int = MAX_FRAGMENTS) -> None:
        super().__init__()
        self.max_entries = max_entries

    def __setitem__(self, key: Hashable, html: str) -> None:
        super().__setitem__(key, html)
        if len(self) > self.max_entries:
            self.popitem(last=False)


class CatalogueCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._version: int | None = None
        self._entries: OrderedDict[Hashable, object] = OrderedDict()
        self._fragments = FragmentStore()

    def _see(self, version: int) -> None:
        if version != self._version:
            self._entries.clear()
            # A new store: a request still rendering from the older version writes into the old one.
            self._fragments = FragmentStore()
            self._version = version

    def fragments(self, version: int) -> FragmentStore:
        """A store for HTML rendered from the catalogue at `version` (templates' rendered_once),
        emptied whenever the catalogue changes."""
        self._see(version)
        return self._fragments

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


async def version_and_cart_count(cart_token: str | None) -> tuple[int, int]:
    """The catalogue version and the number of items in the cart, in one statement: every
    storefront page needs both, and this is the only statement a page served from the cache runs."""
    from shop.cart.services import ITEM_COUNT_SQL
    from shop.cart.tables import CartLine

    rows = await CartLine.raw(
        f"SELECT (SELECT version FROM catalog_version WHERE id = 1) AS version, ({ITEM_COUNT_SQL}) AS n",
        cart_token or "",
    )
    return int(rows[0]["version"]), int(rows[0]["n"])
