"""The application factory: settings in, a configured Litestar app out (no import-time work)."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from typing import Any

from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.middleware import DefineMiddleware
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp
from piccolo.engine.postgres import PostgresEngine

from shop.cart.controllers import CartController
from shop.catalog.cache import CatalogueCache
from shop.catalog.controllers import CatalogController
from shop.checkout.controllers import CheckoutController, payment_return, webhook
from shop.db import bind_tables, make_engine, prepare_sqlite, start_pool
from shop.orders.controllers import OrderController
from shop.payments.choice import check_default_provider
from shop.payments.reconcile import run_forever
from shop.payments.registry import new_http_client
from shop.paths import STATIC_DIR
from shop.tables import TABLES
from shop.sandbox import create_sandbox_router
from shop.settings import Settings
from shop.staff.routes import STAFF_HANDLERS
from shop.staff.guards import StaffLoginRequired, login_redirect, staff_guard
from shop.web.errors import EXCEPTION_HANDLERS
from shop.web.health import healthz
from shop.web.request import ShopRequest
from shop.web.sessions import RenewingCookieConfig
from shop.web.middleware import (LanguageMiddleware, RequestLimitsMiddleware, StrictCSRFMiddleware, head_as_get,
                                 security_headers_hook, servable_file)
from shop.web.page_cache import MAX_LAYOUT_BYTES, PageStore
from shop.web.templating import compile_storefront_templates, template_config

SESSION_MAX_AGE_S = 14 * 24 * 3600
STATIC_MAX_AGE_S = 24 * 3600


def _derived_key(secret: str, purpose: str, size: int = 32) -> bytes:
    """Separate keys per use from the one secret, so a leak of one use says nothing of another."""
    return hashlib.sha256(f"{purpose}:{secret}".encode()).digest()[:size]


class ShopApp(Litestar):
    """Litestar without the pydantic and attrs integrations it adds whenever those libraries are
    importable (Piccolo installs pydantic): the shop's handlers take and return only msgspec-
    friendly types, and the pydantic plugin alone is 8 MiB in every worker."""

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        return [*plugins, MsgspecDIPlugin()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope, send = head_as_get(scope, send)
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    check_default_provider(settings)
    engine = make_engine(settings.database_url)
    bind_tables(engine, TABLES)

    async def start(app: Litestar) -> None:
        compile_storefront_templates()
        await prepare_sqlite(engine)
        if isinstance(engine, PostgresEngine) and settings.db_pool_size > 0:
            await start_pool(engine, settings.db_pool_size)
        app.state["http"] = new_http_client(settings)
        if settings.reconcile_interval_s > 0:
            app.state["reconciler"] = asyncio.create_task(run_forever(settings, app.state["http"]))

    async def stop(app: Litestar) -> None:
        task = app.state.get("reconciler")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app.state["http"].aclose()
        if isinstance(engine, PostgresEngine) and settings.db_pool_size > 0:
            await engine.close_connection_pool()

    sessions = RenewingCookieConfig(
        secret=_derived_key(settings.secret_key, "session"),
        key="session",
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        secure=settings.production,
        samesite="lax",
    )
    csrf = CSRFConfig(
        secret=_derived_key(settings.secret_key, "csrf").hex(),
        cookie_name="csrftoken",
        header_name="x-csrftoken",
        cookie_secure=settings.production,
        cookie_samesite="lax",
    )
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        name="static",
        guards=[servable_file],
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S, public=True),
        include_in_schema=False,
    )
    # Uploaded product images: read-only, under random names (a new image is a new URL, so
    # caching is safe); the security headers hook adds nosniff, so no upload is run as a page.
    media = create_static_files_router(
        path="/media",
        directories=[settings.media_path],
        name="media",
        guards=[servable_file],
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S, public=True),
        include_in_schema=False,
    )
    logging.getLogger("shop").setLevel(logging.INFO)
    staff = Router(path="/", route_handlers=STAFF_HANDLERS, guards=[staff_guard])
    handlers: list[object] = [
        CatalogController, CartController, CheckoutController, OrderController, payment_return, webhook,
        healthz, static, media, staff,
    ]
    if settings.sandbox:
        handlers.append(create_sandbox_router(settings))
    return ShopApp(
        route_handlers=handlers,
        # The CSRF check is installed as app middleware (last, so innermost, where Litestar puts
        # its own) rather than through `csrf_config`, so a malformed token is a 403, not a 500.
        middleware=[RequestLimitsMiddleware, sessions.middleware,
                    DefineMiddleware(LanguageMiddleware, secure_cookie=settings.production),
                    DefineMiddleware(StrictCSRFMiddleware, config=csrf)],
        plugins=[HTMXPlugin()],
        template_config=template_config(),
        exception_handlers={**EXCEPTION_HANDLERS, StaffLoginRequired: login_redirect},  # type: ignore[dict-item]
        before_send=[security_headers_hook(settings.production)],
        on_startup=[start],
        on_shutdown=[stop],
        request_max_body_size=settings.max_body_bytes,
        request_class=ShopRequest,
        openapi_config=None,
        debug=False,
        state=State({"settings": settings, "catalogue_cache": CatalogueCache(),
                     "kept_layouts": PageStore(MAX_LAYOUT_BYTES)}),
    )


def create_proxied_app() -> ASGIApp:
    """`create_app()` behind uvicorn's X-Forwarded-For/-Proto handling, for a server that has
    none of its own (granian): trusted from the same hosts uvicorn trusts (FORWARDED_ALLOW_IPS,
    default 127.0.0.1), so the client address staff sign-in throttling sees is unchanged."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    return ProxyHeadersMiddleware(create_app(), trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))
