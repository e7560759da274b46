"""Built-in provider sandboxes: fake provider servers mounted under /sandbox (development only)."""
from __future__ import annotations

from litestar import Router

from shop.sandbox.checkout import create_checkout_router
from shop.settings import Settings


def create_sandbox_router(settings: Settings) -> Router:
    """Every provider's sandbox under `/sandbox/<provider>`."""
    return Router(path="/sandbox", route_handlers=[create_checkout_router(settings)], include_in_schema=False)
