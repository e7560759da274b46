"""Provider slugs to adapters. Every attempt stores its slug, so old attempts find their adapter."""
from __future__ import annotations

import httpx

from shop.payments.providers.base import Provider
from shop.payments.providers.checkout import CheckoutProvider
from shop.settings import Settings

PROVIDERS: dict[str, type[Provider]] = {cls.slug: cls for cls in (CheckoutProvider,)}


class UnknownProvider(LookupError):
    """No adapter with that slug."""


def provider_for(slug: str, settings: Settings, client: httpx.AsyncClient) -> Provider:
    try:
        return PROVIDERS[slug](settings, client)
    except KeyError:
        raise UnknownProvider(slug) from None


def new_http_client(settings: Settings) -> httpx.AsyncClient:
    """The outbound client: explicit timeouts, no redirects followed, a bounded pool."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=5.0, read=float(settings.provider_timeout_s), write=10.0, pool=5.0),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        headers={"User-Agent": "dira-market-shop/0.1"},
    )
