"""Whole catalogue pages, rendered once and kept for as long as the data they show.

A catalogue page (home, list, search, product) is the same for every customer but for two
things: the customer's CSRF token (in the page's htmx headers and each add-to-cart form) and the
cart badge. A page is rendered with a slot for each, kept under (language, template, path,
query), and each request fills the slots with its own token and badge: no Jinja at all. A page
showing a flash message is that customer's alone and is never kept.

The store belongs to one catalogue version (`CatalogueCache.pages`), so a change to a price,
stock level or category starts an empty one, as the rows the pages came from are replaced.

A page whose content is the customer's own (the cart) keeps its layout instead: the page rendered
once with a content slot, filled on each request with the content rendered for that customer
(`layout_page`)."""
from __future__ import annotations

import re
from array import array
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Hashable

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.utils.scope.state import ScopeState
from markupsafe import Markup

from shop import i18n
from shop.web.templating import CSRF_PLACEHOLDER, environment_for

CART_BADGE_SLOT = "\x00cart-badge\x00"
CONTENT_SLOT = "\x00page-content\x00"
# Pages are kept as the UTF-8 they are sent as: the text itself would take two bytes a character
# for every page, since even an English page holds its Arabic language link. A whole catalogue's
# pages in one language (2,000 product pages of 3.4 kB, 85 list pages of 27 kB) are about 10 MB.
# Past the budget, the pages used least recently go first: search words are keys.
MAX_PAGE_BYTES = 12 * 2**20
_CSRF_SLOT = CSRF_PLACEHOLDER.encode()
_CART_BADGE_SLOT = CART_BADGE_SLOT.encode()
_CONTENT_SLOT = CONTENT_SLOT.encode()
_SLOTS = re.compile(b"|".join(re.escape(slot) for slot in (_CSRF_SLOT, _CART_BADGE_SLOT, _CONTENT_SLOT)))
assert len({len(_CSRF_SLOT), len(_CART_BADGE_SLOT), len(_CONTENT_SLOT)}) == 3, "a kept page tells its slots apart by length"
# Layouts kept for pages of the customer's own content: one a language, path and query string.
MAX_LAYOUT_BYTES = 2**20


class KeptPage:
    """A rendered page and where its slots are, so that filling it is one join of slices:
    bytes.replace over a list page's 23 kB for its 22 token slots took 37-43 us, a sixth of the
    page's CPU; the join takes 6. The page is kept whole, not cut into parts: a part's object
    costs 41 bytes, about 1 MB for a whole catalogue's pages, and a worker is kept under 100 MiB."""

    __slots__ = ("page", "cuts")

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.cuts = array("I")  # start and end of each slot, in order; a slot is told by its length
        for slot in _SLOTS.finditer(page):
            self.cuts.extend(slot.span())

    def __len__(self) -> int:
        return len(self.page) + self.cuts.itemsize * len(self.cuts)

    def filled(self, token: bytes, cart_count: int, content: bytes = b"") -> bytes:
        fills = {len(_CSRF_SLOT): token,
                 len(_CART_BADGE_SLOT): cart_badge(i18n.current_language.get(), cart_count),
                 len(_CONTENT_SLOT): content}
        page = self.page
        parts: list[bytes] = []
        append = parts.append
        at = 0
        cuts = iter(self.cuts)
        for start, end in zip(cuts, cuts):
            append(page[at:start])
            append(fills[end - start])
            at = end
        append(page[at:])
        return b"".join(parts)


class PageStore:
    """Rendered pages by key, bounded by their total length in bytes."""

    def __init__(self, max_bytes: int = MAX_PAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._pages: OrderedDict[Hashable, KeptPage] = OrderedDict()

    def get(self, key: Hashable) -> KeptPage | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def put(self, key: Hashable, page: KeptPage) -> None:
        if key in self._pages:
            self.bytes -= len(self._pages.pop(key))
        self._pages[key] = page
        self.bytes += len(page)
        while self.bytes > self.max_bytes and len(self._pages) > 1:
            self.bytes -= len(self._pages.popitem(last=False)[1])

    def __contains__(self, key: Hashable) -> bool:
        return key in self._pages

    def __len__(self) -> int:
        return len(self._pages)


def _key(request: Request, template_name: str) -> tuple[str, str, str, bytes]:
    scope = request.scope
    return (i18n.current_language.get(), template_name, scope["path"], scope.get("query_string", b""))


def _csrf_token(request: Request) -> str:
    return ScopeState.from_scope(request.scope).csrf_token or ""  # type: ignore[return-value]


@lru_cache(maxsize=256)
def cart_badge(language: str, count: int) -> bytes:
    return environment_for(language).get_template("_partials/_cart_badge.html").render(cart_count=count).encode()


def _response(page: KeptPage, token: str, cart_count: int, content: bytes = b"") -> Response[bytes]:
    return Response(page.filled(token.encode(), cart_count, content), media_type=MediaType.HTML)


def kept_page(request: Request, store: PageStore, template_name: str, cart_count: int) -> Response[bytes] | None:
    """The page kept for this request, filled for this customer; None if there is none. (A
    customer with a flash message waiting gets a page rendered for them: `render_page`.)"""
    token = _csrf_token(request)
    if not token:
        return None
    page = store.get(_key(request, template_name))
    return None if page is None else _response(page, token, cart_count)


def _render_kept(request: Request, template_name: str, context: dict[str, Any], token: str) -> KeptPage:
    template = request.app.template_engine.get_template(template_name)  # type: ignore[union-attr]
    html = template.render(**context, request=request, cart_badge_slot=Markup(CART_BADGE_SLOT))
    if token:
        # Macros that know no context write the placeholder; the layout wrote the token itself.
        html = html.replace(token, CSRF_PLACEHOLDER)
    return KeptPage(html.encode())


def render_page(request: Request, store: PageStore, template_name: str, context: dict[str, Any]) -> Response[bytes]:
    """Renders the page with its slots, keeps it unless it is this customer's alone (a flash
    message), and fills it for this customer."""
    token = _csrf_token(request)
    page = _render_kept(request, template_name, context, token)
    if token and not context.get("flashes"):
        store.put(_key(request, template_name), page)
    return _response(page, token, int(context.get("cart_count") or 0))


def layout_page(request: Request, store: PageStore, template_name: str, content_name: str,
                context: dict[str, Any]) -> Response[bytes]:
    """`template_name` as rendered from `context`, but for its layout: kept in `store`, the page
    rendered once with `content_slot` where the template includes `content_name`, which is
    rendered for each request. All the template shows outside `content_name` must be the same
    for every customer. A page with a flash message is rendered whole, and not kept."""
    token = _csrf_token(request)
    cart_count = int(context.get("cart_count") or 0)
    if not token or context.get("flashes"):
        return _response(_render_kept(request, template_name, context, token), token, cart_count)
    key = _key(request, template_name)
    layout = store.get(key)
    if layout is None:
        layout = _render_kept(request, template_name, {**context, "content_slot": Markup(CONTENT_SLOT)}, token)
        store.put(key, layout)
    content = request.app.template_engine.get_template(content_name).render(**context, request=request)  # type: ignore[union-attr]
    return _response(layout, token, cart_count, content.encode())
