"""Provider slugs to adapters. Every attempt stores its slug, so old attempts find their adapter."""
from __future__ import annotations

from importlib import import_module

import httpx

from shop.payments.providers.base import Provider
from shop.settings import Settings

# slug -> "module:Class". The slugs are the contract names in design.md.
ADAPTERS: dict[str, str] = {
    "checkout": "shop.payments.providers.checkout:CheckoutProvider",
    "checkout_setup": "shop.payments.providers.checkout_setup:CheckoutSetupProvider",
    "aps": "shop.payments.providers.aps:ApsProvider",
    "upayments": "shop.payments.providers.upayments:UpaymentsProvider",
    "tap": "shop.payments.providers.tap:TapProvider",
    "knet": "shop.payments.providers.knet:KnetProvider",
}


class UnknownProvider(LookupError):
    """No adapter with that slug."""


def provider_class(slug: str) -> type[Provider]:
    try:
        module_name, class_name = ADAPTERS[slug].split(":")
    except KeyError:
        raise UnknownProvider(slug) from None
    return getattr(import_module(module_name), class_name)


def provider_for(slug: str, settings: Settings, client: httpx.AsyncClient) -> Provider:
    return provider_class(slug)(settings, client)


class _SendsNothing(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"an adapter asked about its settings sent {request.method} {request.url}")


def offline_provider(slug: str, settings: Settings) -> Provider:
    """The adapter for questions about its settings and capabilities, with a client that sends
    nothing. A default httpx client loads the CA bundle, 40 ms of the event loop each time: the
    staff providers page asked that of every adapter on every view."""
    return provider_for(slug, settings, httpx.AsyncClient(transport=_SendsNothing(), trust_env=False))


def new_http_client(settings: Settings) -> httpx.AsyncClient:
    """The outbound client: explicit timeouts, no redirects followed, a bounded pool."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=5.0, read=float(settings.provider_timeout_s), write=10.0, pool=5.0),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        headers={"User-Agent": "dira-market-shop/0.1"},
    )
