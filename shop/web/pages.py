"""Helpers every controller uses: the shared page context, flash messages, htmx detection."""
from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.params import Parameter
from litestar.response import Redirect

from shop.cart.services import item_count
from shop.catalog.cache import CatalogueCache
from shop.db import MAX_ROW_ID
from shop.payments.choice import active_provider_slug
from shop.payments.providers.base import Provider
from shop.payments.registry import provider_for
from shop.settings import Settings
from shop.web.page_cache import PageStore

CART_SESSION_KEY = "cart"
LAST_ORDER_SESSION_KEY = "order"
FLASH_SESSION_KEY = "flash"

# Row ids in URLs: a number past MAX_ROW_ID names no row and is refused (400) before it reaches
# a driver that would fail on it (a 500).
RowId = Annotated[int, Parameter(ge=1, le=MAX_ROW_ID)]


def app_settings(request: Request) -> Settings:
    return request.app.state["settings"]


def provider_named(request: Request, slug: str) -> Provider:
    """The adapter for `slug`, sharing the app's outbound HTTP client. Raises UnknownProvider."""
    return provider_for(slug, app_settings(request), request.app.state["http"])


async def active_provider(request: Request) -> Provider:
    """The provider new payments start with, as the merchant chose (attempts keep theirs)."""
    return provider_named(request, await active_provider_slug(app_settings(request)))


def is_htmx(request: Request) -> bool:
    """An htmx request that wants a fragment (boosted navigation wants whole pages)."""
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-boosted") != "true"


def cart_token(request: Request) -> str | None:
    token = request.session.get(CART_SESSION_KEY) if request.scope.get("session") is not None else None
    return token if isinstance(token, str) else None


def flash(request: Request, message: str, kind: str = "info") -> None:
    """A message shown once on the next full page (the no-JavaScript path after a redirect)."""
    messages = list(request.session.get(FLASH_SESSION_KEY) or [])
    messages.append({"kind": kind, "text": message})
    request.session[FLASH_SESSION_KEY] = messages[-3:]


def has_flashes(request: Request) -> bool:
    session = request.scope.get("session")
    return bool(session) and bool(session.get(FLASH_SESSION_KEY))  # type: ignore[union-attr]


def take_flashes(request: Request) -> list[dict[str, str]]:
    if request.scope.get("session") and FLASH_SESSION_KEY in request.session:
        return list(request.session.pop(FLASH_SESSION_KEY) or [])
    return []


def catalogue_cache(request: Request) -> CatalogueCache:
    return request.app.state["catalogue_cache"]


def kept_layouts(request: Request) -> PageStore:
    """Layouts of pages whose content is the customer's own; they show no catalogue data."""
    return request.app.state["kept_layouts"]


async def page_context(request: Request, cart_count: int | None = None, **context: Any) -> dict[str, Any]:
    """What the layout needs on every page: the cart badge (counted here unless the caller
    already knows it) and pending flash messages."""
    return {
        "cart_count": await item_count(cart_token(request)) if cart_count is None else cart_count,
        "flashes": take_flashes(request),
        "path": request.url.path,
        "query_params": dict(request.query_params),
        **context,
    }


def see_other(url: str) -> Redirect:
    return Redirect(path=url, status_code=303)
