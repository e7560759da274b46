"""The one contract every payment provider adapter implements: dataclasses in, dataclasses out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Mapping

import httpx

from shop.payments.states import PaymentStatus
from shop.settings import Settings

# How a payment link reaches the customer: shown to staff only, or also sent by email or SMS.
LINK_CHANNELS = ("link", "email", "sms")


class ProviderError(Exception):
    """Base of what an adapter raises."""


class ProviderUnavailable(ProviderError):
    """No answer we can trust (timeout, connection error, 5xx, garbage). Retry later; keep pending."""


class ProviderRejected(ProviderError):
    """The provider answered and refused the request (validation, auth, business rule)."""


class BadSignature(ProviderError):
    """A return or webhook whose signature does not verify. Reject it; change nothing."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    redirect: str  # "get" (303 to a URL) or "form_post" (auto-submitting form)
    return_verification: str
    webhook_verification: str
    inquiry: bool
    refunds: bool
    partial_refunds: bool
    expiry_seconds: int
    payment_links: bool = False
    # Pays each vendor's share straight to its IBAN (UPayments `extraMerchantData`).
    vendor_splits: bool = False
    # Some providers need the minor-unit amount to end in zero (Checkout.com, 3-decimal currencies).
    amount_step_fils: int = 1


@dataclass(frozen=True, slots=True)
class VendorSplit:
    """One vendor's share of a multi-vendor payment (UPayments `extraMerchantData`)."""

    vendor_reference: str
    iban: str
    amount_fils: int
    commission_fils: int = 0


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    merchant_reference: str  # unique per attempt
    order_reference: str
    amount_fils: int
    currency: str
    language: str  # "en" | "ar"
    idempotency_key: str
    return_url: str  # success and failure both come back here; the provider's status decides
    webhook_url: str
    customer_name: str
    customer_email: str
    customer_phone: str
    description: str
    # Per-vendor shares for marketplace payouts; empty for a single-merchant order.
    splits: tuple[VendorSplit, ...] = ()


@dataclass(frozen=True, slots=True)
class StartedPayment:
    provider_payment_id: str | None
    redirect_url: str
    # For form-POST providers: the fields to auto-submit to `redirect_url`.
    form_fields: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KnetReceipt:
    payment_id: str = ""
    transaction_id: str = ""
    auth_code: str = ""
    bank_reference: str = ""
    track_id: str = ""
    result: str = ""
    post_date: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """What a provider told us about one payment, whatever channel it came through."""

    status: PaymentStatus | None  # capture-side news; None for refund-only or unknown news
    provider_payment_id: str | None = None
    merchant_reference: str | None = None
    amount_fils: int | None = None
    currency: str | None = None
    receipt: KnetReceipt = field(default_factory=KnetReceipt)
    event_id: str | None = None
    event_type: str = ""
    failure_reason: str = ""
    # Refund news: the provider's refund id (or action id) and its outcome.
    refund_id: str | None = None
    refund_status: str | None = None  # "pending" | "succeeded" | "failed"
    refund_amount_fils: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    # False for unsigned notifications (UPayments): only a hint, confirmed by inquiry first.
    trusted: bool = True
    # The provider was asked and has no payment by that reference (not "no answer", nor "cannot
    # be looked up"): with no payment page ever shown, nobody can pay it.
    unknown_to_provider: bool = False


@dataclass(frozen=True, slots=True)
class ReturnHint:
    """What the browser brought back: enough to find the attempt and ask the provider."""

    provider_payment_id: str | None = None
    merchant_reference: str | None = None
    # Set when the return itself is signed and verified (APS, KNET), so it may carry a status.
    verified: Observation | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """What the provider expects back from our webhook endpoint."""

    status_code: int = 200
    media_type: str = "application/json"
    body: Any = field(default_factory=lambda: {"received": True})


@dataclass(frozen=True, slots=True)
class RefundRequest:
    provider_payment_id: str
    amount_fils: int
    currency: str
    idempotency_key: str
    reference: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    provider_refund_id: str | None
    status: str  # "pending" | "succeeded" | "failed"
    raw: Mapping[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """An adapter. The same code runs against the real provider and its sandbox: only URLs differ."""

    slug: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @property
    def attempt_slugs(self) -> tuple[str, ...]:
        """Whose attempts this provider's returns and notifications may concern: its own, unless
        one provider account serves several adapters."""
        return (self.slug,)

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    @abstractmethod
    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        """Create the payment. Raises ProviderUnavailable (unknown outcome) or ProviderRejected."""

    @abstractmethod
    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        """Read the browser return. Raises BadSignature where the provider signs returns."""

    @abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """Verify over the raw body and parse. Raises BadSignature. Never calls the network."""

    @abstractmethod
    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        """The provider's authoritative status. Idempotent. Raises ProviderUnavailable."""

    @abstractmethod
    async def refund(self, request: RefundRequest) -> RefundResult:
        """Ask for a refund (idempotent by key). Raises ProviderUnavailable or ProviderRejected."""

    async def create_link(self, request: PaymentRequest, channel: str, expires_at: datetime) -> StartedPayment:
        """A payment link for a payment started by staff (`capabilities.payment_links`), sent by
        `channel` (LINK_CHANNELS). The link's payment returns and notifies like any other payment
        of `request.merchant_reference`. Raises ProviderRejected or ProviderUnavailable."""
        raise ProviderRejected(f"{self.slug} has no payment links")

    async def inquire_refund(self, provider_refund_id: str) -> Observation | None:
        """A refund's outcome, for providers whose refund news may not come by signed webhook.

        None: this provider tells refund outcomes by its (signed) notifications only."""
        return None

    def webhook_reply(self, observations: list[Observation], public_url: str) -> WebhookReply:
        """The answer to an accepted notification (KNET's tranportal wants `REDIRECT=<url>`)."""
        return WebhookReply(body={"received": len(observations)})

    def rejected_webhook_reply(self, public_url: str) -> WebhookReply:
        """The answer to a notification whose signature failed: nothing was changed."""
        return WebhookReply(status_code=401, body={"error": "invalid signature"})

    def missing_credentials(self) -> list[str]:
        """Names of settings this provider needs that are empty."""
        return []

    def sandbox_credentials_in_use(self) -> list[str]:
        """Names of settings still holding the built-in sandbox's values (refused in production)."""
        from shop.settings import SANDBOX_CREDENTIALS

        prefix = self.settings_prefix()
        return [f"SHOP_{name}" for name, value in SANDBOX_CREDENTIALS.items()
                if name.startswith(prefix) and self.settings.provider_value(name) == value]

    def settings_prefix(self) -> str:
        """The `SHOP_<PREFIX>_...` family of this provider's settings."""
        return self.slug.split("_")[0].upper() + "_"
