"""The merchant's provider choice lives in the database; new payments use it, old ones keep theirs."""
import pytest

from shop.payments.choice import ProviderNotReady, active_provider_slug, choose_provider
from shop.payments.tables import ShopSetting
from shop.settings import Settings

pytestmark = pytest.mark.asyncio
SETTINGS = Settings(secret_key="x" * 40, provider="checkout")


async def test_default_then_chosen_then_changed_again() -> None:
    await ShopSetting.delete(force=True)
    assert await active_provider_slug(SETTINGS) == "checkout"
    await choose_provider("checkout_setup", SETTINGS, "owner@example.com")
    assert await active_provider_slug(SETTINGS) == "checkout_setup"
    await choose_provider("checkout", SETTINGS, "owner@example.com")
    assert await active_provider_slug(SETTINGS) == "checkout"
    row = await ShopSetting.select().first()
    assert row["updated_by"] == "owner@example.com" and await ShopSetting.count() == 1


async def test_unknown_or_unconfigured_providers_cannot_be_chosen() -> None:
    with pytest.raises(ProviderNotReady):
        await choose_provider("paypal", SETTINGS, "owner@example.com")
    production = Settings(env="production", secret_key="k" * 48, sandbox=False, public_url="https://x.example")
    with pytest.raises(ProviderNotReady, match="not set"):
        await choose_provider("checkout_setup", production, "owner@example.com")


async def test_a_total_the_provider_cannot_take_is_refused_not_rounded() -> None:
    import httpx

    from shop.orders.services import OrderError
    from shop.payments.flows import check_payable
    from shop.payments.registry import provider_for

    checkout = provider_for("checkout", SETTINGS, httpx.AsyncClient())
    check_payable(12340, checkout)
    with pytest.raises(OrderError, match="multiple of KWD 0.010"):
        check_payable(12345, checkout)
