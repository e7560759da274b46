"""Production refuses a default provider that is not really configured; development runs on sandboxes."""
import pytest

from shop.payments.choice import check_default_provider, readiness
from shop.settings import SANDBOX_CREDENTIALS, Settings, SettingsError

PRODUCTION = dict(env="production", secret_key="k" * 48, sandbox=False, public_url="https://shop.example.com")
REAL_CHECKOUT = {
    "SHOP_CHECKOUT_API_URL": "https://api.checkout.com",
    "SHOP_CHECKOUT_SECRET_KEY": "sk_abcdefghijklmnopqrstuvwxyz2",
    "SHOP_CHECKOUT_WEBHOOK_SECRET": "real-signing-key",
}


def test_development_defaults_are_ready_on_the_sandbox() -> None:
    settings = Settings(secret_key="x" * 40)
    check_default_provider(settings)
    assert readiness("checkout", settings).missing == []
    assert "SHOP_CHECKOUT_SECRET_KEY" in readiness("checkout", settings).sandbox_values


def test_production_with_real_credentials_starts() -> None:
    check_default_provider(Settings(**PRODUCTION, provider_settings=REAL_CHECKOUT))


def test_production_without_credentials_is_refused() -> None:
    with pytest.raises(SettingsError, match="SHOP_CHECKOUT_SECRET_KEY is not set"):
        check_default_provider(Settings(**PRODUCTION))


def test_production_with_sandbox_credentials_is_refused() -> None:
    sandbox_key = {**REAL_CHECKOUT, "SHOP_CHECKOUT_SECRET_KEY": SANDBOX_CREDENTIALS["CHECKOUT_SECRET_KEY"]}
    with pytest.raises(SettingsError, match="sandbox value"):
        check_default_provider(Settings(**PRODUCTION, provider_settings=sandbox_key))


def test_unknown_default_provider_is_refused() -> None:
    with pytest.raises(SettingsError, match="SHOP_PROVIDER"):
        check_default_provider(Settings(secret_key="x" * 40, provider="paypal"))
