"""Which provider new payments start with: the merchant's choice, kept in the database.

`SHOP_PROVIDER` is the default until staff choose; every attempt keeps the provider it
started with, so switching never strands a payment already under way."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from shop.payments.registry import ADAPTERS, offline_provider
from shop.payments.tables import ShopSetting
from shop.settings import Settings, SettingsError

ACTIVE_PROVIDER_KEY = "active_provider"


class ProviderNotReady(ValueError):
    """The provider cannot be made active: unknown, or not configured for this mode."""


@dataclass(frozen=True, slots=True)
class Readiness:
    slug: str
    missing: list[str]
    sandbox_values: list[str]

    def problems(self, settings: Settings) -> list[str]:
        problems = [f"{name} is not set" for name in self.missing]
        if settings.production:
            problems += [f"{name} still holds the sandbox value" for name in self.sandbox_values]
        return problems


def readiness(slug: str, settings: Settings) -> Readiness:
    provider = offline_provider(slug, settings)
    return Readiness(slug, provider.missing_credentials(), provider.sandbox_credentials_in_use())


async def active_provider_slug(settings: Settings) -> str:
    row = await ShopSetting.select(ShopSetting.value).where(ShopSetting.key == ACTIVE_PROVIDER_KEY).first()
    slug = row["value"] if row else ""
    return slug if slug in ADAPTERS else settings.provider


async def choose_provider(slug: str, settings: Settings, chosen_by: str) -> None:
    """Make `slug` the provider for new payments. Raises ProviderNotReady."""
    if slug not in ADAPTERS:
        raise ProviderNotReady(f"unknown provider {slug!r}")
    problems = readiness(slug, settings).problems(settings)
    if problems:
        raise ProviderNotReady(f"{slug} is not ready: " + "; ".join(problems))
    now = datetime.now(timezone.utc)
    await ShopSetting.insert(ShopSetting(key=ACTIVE_PROVIDER_KEY, value=slug, updated_by=chosen_by, updated_at=now)
                             ).on_conflict(target=ShopSetting.key, action="DO UPDATE",
                                           values=[ShopSetting.value, ShopSetting.updated_by, ShopSetting.updated_at])


def check_default_provider(settings: Settings) -> None:
    """At start-up: the default provider must exist and, in production, be really configured."""
    if settings.provider not in ADAPTERS:
        raise SettingsError(f"SHOP_PROVIDER must be one of {', '.join(sorted(ADAPTERS))}, not {settings.provider!r}")
    problems = readiness(settings.provider, settings).problems(settings)
    if settings.production and problems:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))
