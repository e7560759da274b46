"""The application factory: settings in, a configured Litestar app out (no import-time work)."""
from __future__ import annotations

import hashlib
import logging

from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.middleware import DefineMiddleware
from litestar.middleware.session.client_side import CookieBackendConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.static_files import create_static_files_router
from piccolo.engine.postgres import PostgresEngine

from shop.cart.controllers import CartController
from shop.catalog.controllers import CatalogController
from shop.checkout.controllers import CheckoutController
from shop.db import bind_tables, make_engine, prepare_sqlite
from shop.paths import STATIC_DIR
from shop.piccolo_app import TABLES
from shop.settings import Settings
from shop.web.errors import EXCEPTION_HANDLERS
from shop.web.health import healthz
from shop.web.middleware import LanguageMiddleware, security_headers_hook
from shop.web.templating import template_config

SESSION_MAX_AGE_S = 14 * 24 * 3600
STATIC_MAX_AGE_S = 24 * 3600


def _derived_key(secret: str, purpose: str, size: int = 32) -> bytes:
    """Separate keys per use from the one secret, so a leak of one use says nothing of another."""
    return hashlib.sha256(f"{purpose}:{secret}".encode()).digest()[:size]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    bind_tables(engine, TABLES)

    async def open_database() -> None:
        await prepare_sqlite(engine)
        if isinstance(engine, PostgresEngine) and settings.db_pool_size > 0:
            await engine.start_connection_pool(min_size=1, max_size=settings.db_pool_size)

    async def close_database() -> None:
        if isinstance(engine, PostgresEngine) and settings.db_pool_size > 0:
            await engine.close_connection_pool()

    sessions = CookieBackendConfig(
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
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S, public=True),
        include_in_schema=False,
    )
    logging.getLogger("shop").setLevel(logging.INFO)
    return Litestar(
        route_handlers=[CatalogController, CartController, CheckoutController, healthz, static],
        middleware=[sessions.middleware, DefineMiddleware(LanguageMiddleware, secure_cookie=settings.production)],
        csrf_config=csrf,
        plugins=[HTMXPlugin()],
        template_config=template_config(),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        before_send=[security_headers_hook(settings.production)],
        on_startup=[open_database],
        on_shutdown=[close_database],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        debug=False,
        state=State({"settings": settings}),
    )
