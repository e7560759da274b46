from pathlib import Path

import pytest

from shop.settings import Settings, SettingsError

PRODUCTION_OK = {
    "SHOP_ENV": "production",
    "SHOP_SECRET_KEY": "k" * 48,
    "SHOP_SANDBOX": "0",
    "SHOP_PUBLIC_URL": "https://shop.example.com",
}


def test_defaults_give_the_offline_demo(tmp_path: Path) -> None:
    settings = Settings.from_env({}, cwd=tmp_path)
    assert settings.database_url == "sqlite:///shop.db"
    assert settings.sandbox is True
    assert settings.provider == "checkout"
    assert settings.public_url == "http://127.0.0.1:8000"
    # The development secret is generated once and kept.
    assert len(settings.secret_key) >= 32
    assert Settings.from_env({}, cwd=tmp_path).secret_key == settings.secret_key


def test_dotenv_fills_gaps_but_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SHOP_PROVIDER=tap\nSHOP_PUBLIC_URL='http://a.test/'\n# c\n")
    settings = Settings.from_env({"SHOP_PROVIDER": "knet"}, cwd=tmp_path)
    assert settings.provider == "knet"
    assert settings.public_url == "http://a.test"


def test_provider_settings_are_kept_for_the_adapters(tmp_path: Path) -> None:
    settings = Settings.from_env({"SHOP_TAP_SECRET_KEY": "sk_test_x"}, cwd=tmp_path)
    assert settings.provider_settings["SHOP_TAP_SECRET_KEY"] == "sk_test_x"


def test_production_accepts_safe_settings(tmp_path: Path) -> None:
    assert Settings.from_env(PRODUCTION_OK, cwd=tmp_path).production


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"SHOP_SECRET_KEY": ""}, "SHOP_SECRET_KEY"),
        ({"SHOP_SECRET_KEY": "short"}, "SHOP_SECRET_KEY"),
        ({"SHOP_SANDBOX": "1"}, "SHOP_SANDBOX"),
        ({"SHOP_PUBLIC_URL": "http://shop.example.com"}, "https"),
    ],
)
def test_production_refuses_unsafe_defaults(tmp_path: Path, change: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env({**PRODUCTION_OK, **change}, cwd=tmp_path)
    assert not (tmp_path / ".shop-secret-key").exists()


@pytest.mark.parametrize(
    "env",
    [{"SHOP_DATABASE_URL": "mysql://x"}, {"SHOP_SANDBOX": "maybe"}, {"SHOP_PORT": "eighty"}, {"SHOP_ENV": "staging"}],
)
def test_malformed_settings_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env, cwd=tmp_path)
