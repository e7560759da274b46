"""Built-in provider sandboxes: fake provider servers mounted under /sandbox (development only)."""
from __future__ import annotations

from importlib import import_module

from litestar import Router

from shop.settings import Settings

# One module per provider, each with `create_router(settings)` mounted at /sandbox/<name>.
SANDBOXES = ("checkout", "aps", "tap", "upayments", "knet",)


def create_sandbox_router(settings: Settings) -> Router:
    """Every provider's sandbox under `/sandbox/<provider>`."""
    routers = [import_module(f"shop.sandbox.{name}").create_router(settings) for name in SANDBOXES]
    return Router(path="/sandbox", route_handlers=routers, include_in_schema=False)
