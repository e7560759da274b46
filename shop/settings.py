"""Settings: read once from `SHOP_` environment variables (and an optional `.env` file)."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from shop.vendors.iban import is_kuwaiti_iban, normalise_iban

DEFAULT_DATABASE_URL = "sqlite:///shop.db"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
DEV_SECRET_FILE = ".shop-secret-key"
SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"  # granian is faster but stops when a worker dies: docs/performance.md
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


# Credentials the built-in sandboxes accept. Production refuses every one of them.
SANDBOX_CREDENTIALS: dict[str, str] = {
    "CHECKOUT_SECRET_KEY": "sk_sbox_diramarketknetsandboxkey2qa",  # matches the SDK key pattern
    "CHECKOUT_WEBHOOK_SECRET": "whsec_dira_market_sandbox_signing_key",
    "CHECKOUT_PROCESSING_CHANNEL_ID": "pc_dira_market_sandbox",
    "APS_ACCESS_CODE": "DiraSbxAccessCode001",
    "APS_MERCHANT_IDENTIFIER": "DiraSbx1",
    "APS_SHA_REQUEST_PHRASE": "dira-sandbox-request-phrase",
    "APS_SHA_RESPONSE_PHRASE": "dira-sandbox-response-phrase",
    "TAP_SECRET_KEY": "sk_test_DiraMarketSandboxTapKey0001",
    "UPAYMENTS_API_KEY": "dira-sandbox-upayments-api-key",
    "KNET_TRANPORTAL_ID": "dira100",
    "KNET_TRANPORTAL_PASSWORD": "dira100pass",
    "KNET_RESOURCE_KEY": "DIRASANDBOXKEY16",
}
# Path of each provider's sandbox under the shop, for provider URL settings left unset.
SANDBOX_URLS: dict[str, str] = {
    "CHECKOUT_API_URL": "/sandbox/checkout",
    "APS_PAGE_URL": "/sandbox/aps",
    "APS_API_URL": "/sandbox/aps",
    "TAP_API_URL": "/sandbox/tap",
    "UPAYMENTS_API_URL": "/sandbox/upayments",
    "KNET_GATEWAY_URL": "/sandbox/knet",
}
# The shop's own IBAN in multi-vendor splits while sandboxes are on (seed 004's example IBAN).
SANDBOX_MERCHANT_IBAN = "KW91KFHO0000000000051010173254"


class SettingsError(ValueError):
    """A setting is missing, malformed, or unsafe for the chosen mode."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal `.env` file: KEY=VALUE lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def _dev_secret_key(folder: Path) -> str:
    """Generate the development secret once and keep it, so sessions survive restarts."""
    path = folder / DEV_SECRET_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    key = secrets.token_urlsafe(48)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key


@dataclass(frozen=True, slots=True)
class Settings:
    env: str = "development"
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str = ""
    public_url: str = DEFAULT_PUBLIC_URL
    provider: str = "checkout"
    sandbox: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # The ASGI server `shop serve` runs (see docs/performance.md for why this one).
    server: str = DEFAULT_SERVER
    # Connections per process; 0 disables the pool (each query opens its own connection).
    db_pool_size: int = 10
    page_size: int = 24
    # Seconds between reconciliation passes in each app process (0: no background loop).
    reconcile_interval_s: int = 15
    # Read timeout for provider API calls; a timeout leaves the payment pending, never failed.
    provider_timeout_s: int = 15
    smtp_url: str = ""
    email_from: str = "Dira Market <orders@localhost>"
    max_body_bytes: int = 64 * 1024
    # Uploaded files (product images), served at /media/. Relative: beside the SQLite database.
    media_dir: str = "media"
    # Receives the shop's own lines (and is the payee of commissions) in UPayments multi-vendor splits.
    upayments_merchant_iban: str = ""
    # Extra provider settings (SHOP_<PROVIDER>_<SETTING>), kept raw until providers read them.
    provider_settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def media_path(self) -> Path:
        """The media folder: a relative `SHOP_MEDIA_DIR` sits beside the SQLite database file
        (so Docker's /data volume holds it too), or in the working folder with PostgreSQL."""
        path = Path(self.media_dir)
        if not path.is_absolute() and self.database_url.startswith("sqlite:///"):
            path = Path(self.database_url.removeprefix("sqlite:///")).parent / path
        return path.absolute()

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    @property
    def merchant_iban(self) -> str:
        """The shop's IBAN for split payments: the setting, or with sandboxes on the sandbox's."""
        return self.upayments_merchant_iban or (SANDBOX_MERCHANT_IBAN if self.sandbox else "")

    def provider_value(self, name: str) -> str:
        """`SHOP_<name>` if set; else, with sandboxes on, the sandbox's URL or credential; else ""."""
        value = self.provider_settings.get(f"SHOP_{name}", "").strip()
        if value or not self.sandbox:
            return value.rstrip("/") if name.endswith("_URL") else value
        if name in SANDBOX_URLS:
            return self.public_url + SANDBOX_URLS[name]
        return SANDBOX_CREDENTIALS.get(name, "")

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> "Settings":
        """Build settings from the environment; `.env` in the working folder fills gaps."""
        folder = cwd or Path.cwd()
        env = {**read_dotenv(folder / ".env"), **(os.environ if environ is None else environ)}
        mode = env.get("SHOP_ENV", "development").strip().lower() or "development"
        if mode not in {"development", "production", "test"}:
            raise SettingsError(f"SHOP_ENV must be development, production or test, not {mode!r}")
        secret = env.get("SHOP_SECRET_KEY", "").strip()
        if not secret and mode != "production":
            secret = _dev_secret_key(folder)
        known = {
            "SHOP_ENV", "SHOP_DATABASE_URL", "SHOP_SECRET_KEY", "SHOP_PUBLIC_URL", "SHOP_PROVIDER",
            "SHOP_SANDBOX", "SHOP_HOST", "SHOP_PORT", "SHOP_WORKERS", "SHOP_DB_POOL_SIZE",
            "SHOP_PAGE_SIZE", "SHOP_MAX_BODY_BYTES", "SHOP_RECONCILE_INTERVAL_S", "SHOP_SMTP_URL", "SHOP_PROVIDER_TIMEOUT_S",
            "SHOP_EMAIL_FROM", "SHOP_MEDIA_DIR", "SHOP_UPAYMENTS_MERCHANT_IBAN", "SHOP_SERVER",
        }
        settings = cls(
            env=mode,
            database_url=env.get("SHOP_DATABASE_URL", DEFAULT_DATABASE_URL).strip() or DEFAULT_DATABASE_URL,
            secret_key=secret,
            public_url=(env.get("SHOP_PUBLIC_URL", DEFAULT_PUBLIC_URL).strip() or DEFAULT_PUBLIC_URL).rstrip("/"),
            provider=env.get("SHOP_PROVIDER", "checkout").strip() or "checkout",
            sandbox=_flag(env, "SHOP_SANDBOX", True),
            host=env.get("SHOP_HOST", "127.0.0.1"),
            port=_int(env, "SHOP_PORT", 8000),
            workers=_int(env, "SHOP_WORKERS", 1),
            server=env.get("SHOP_SERVER", "").strip().lower() or DEFAULT_SERVER,
            db_pool_size=_int(env, "SHOP_DB_POOL_SIZE", 10),
            page_size=_int(env, "SHOP_PAGE_SIZE", 24),
            max_body_bytes=_int(env, "SHOP_MAX_BODY_BYTES", 64 * 1024),
            reconcile_interval_s=_int(env, "SHOP_RECONCILE_INTERVAL_S", 15),
            provider_timeout_s=_int(env, "SHOP_PROVIDER_TIMEOUT_S", 15),
            smtp_url=env.get("SHOP_SMTP_URL", "").strip(),
            email_from=env.get("SHOP_EMAIL_FROM", "").strip() or "Dira Market <orders@localhost>",
            media_dir=env.get("SHOP_MEDIA_DIR", "").strip() or "media",
            upayments_merchant_iban=normalise_iban(env.get("SHOP_UPAYMENTS_MERCHANT_IBAN", "")),
            provider_settings={k: v for k, v in env.items() if k.startswith("SHOP_") and k not in known},
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse malformed values, and unsafe defaults in production."""
        if not self.database_url.startswith(("sqlite:///", "postgres://", "postgresql://")):
            raise SettingsError("SHOP_DATABASE_URL must start with sqlite:/// or postgres://")
        if not self.public_url.startswith(("http://", "https://")):
            raise SettingsError("SHOP_PUBLIC_URL must be an http(s) URL")
        if self.server not in SERVERS:
            raise SettingsError(f"SHOP_SERVER must be one of {', '.join(SERVERS)}, not {self.server!r}")
        if not 1 <= self.page_size <= 200:
            raise SettingsError("SHOP_PAGE_SIZE must be between 1 and 200")
        if self.upayments_merchant_iban and not is_kuwaiti_iban(self.upayments_merchant_iban):
            raise SettingsError("SHOP_UPAYMENTS_MERCHANT_IBAN must be a Kuwaiti IBAN (KW, 30 characters) "
                                "whose check digits hold")
        if self.production:
            problems = []
            if len(self.secret_key) < 32:
                problems.append("SHOP_SECRET_KEY must be set to at least 32 random characters")
            if self.sandbox:
                problems.append("SHOP_SANDBOX must be 0 (sandboxes are for development)")
            if not self.public_url.startswith("https://"):
                problems.append("SHOP_PUBLIC_URL must be an https:// URL")
            if problems:
                raise SettingsError("refusing to start in production: " + "; ".join(problems))
