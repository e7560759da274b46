"""The hosted KNET payment page every sandbox shares: banks, card/PIN/expiry checks, outcomes."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Mapping, Protocol

from litestar import Response
from litestar.response import Template

from shop.money import format_kwd

TEST_CARD_APPROVED = "8888880000000001"
TEST_CARD_DECLINED = "8888880000000002"
TEST_PIN = "1234"
EXPIRY_YEARS = tuple(str(year) for year in range(2020, 2041))  # the seed's test expiry 09/2025 included
EXPIRY_MONTHS = tuple(f"{month:02d}" for month in range(1, 13))
KUWAIT_TIME = timezone(timedelta(hours=3))  # KNET's business day (post date) is Kuwait's
LANGUAGES = ("en", "ar")
PAGE_TEMPLATE = "sandbox/knet_page.html"
RESULT_TEMPLATE = "sandbox/knet_result.html"


@dataclass(frozen=True, slots=True)
class Bank:
    code: str
    name_en: str
    name_ar: str


BANKS: tuple[Bank, ...] = (
    Bank("KNET1", "Knet Test Card [KNET1]", "بطاقة كي نت التجريبية [KNET1]"),
    Bank("ABK", "Al Ahli Bank of Kuwait [ABK]", "البنك الأهلي الكويتي [ABK]"),
    Bank("BBK", "Bank of Bahrain and Kuwait [BBK]", "بنك البحرين والكويت [BBK]"),
    Bank("BOUBYAN", "Boubyan Bank [BOUBYAN]", "بنك بوبيان [BOUBYAN]"),
    Bank("BURGAN", "Burgan Bank [BURGAN]", "بنك برقان [BURGAN]"),
    Bank("CBK", "Commercial Bank of Kuwait [CBK]", "البنك التجاري الكويتي [CBK]"),
    Bank("GBK", "Gulf Bank [GBK]", "بنك الخليج [GBK]"),
    Bank("KFH", "Kuwait Finance House [KFH]", "بيت التمويل الكويتي [KFH]"),
    Bank("KIB", "Kuwait International Bank [KIB]", "بنك الكويت الدولي [KIB]"),
    Bank("NBK", "National Bank of Kuwait [NBK]", "بنك الكويت الوطني [NBK]"),
    Bank("WARBA", "Warba Bank [WARBA]", "بنك وربة [WARBA]"),
)
BANKS_BY_CODE = {bank.code: bank for bank in BANKS}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "KNET Payment Gateway",
        "merchant": "Merchant",
        "amount": "Amount",
        "reference": "Reference",
        "bank": "Select your bank",
        "choose_bank": "Select your bank",
        "card_number": "Card number",
        "expiry": "Expiration date",
        "month": "Month",
        "year": "Year",
        "pin": "PIN",
        "submit": "Submit",
        "cancel": "Cancel",
        "sandbox_note": "Sandbox: test card 8888880000000001, PIN 1234 succeeds; 8888880000000002 is declined.",
        "switch_language": "العربية",
        "error_bank": "Please select your bank.",
        "error_card": "Please enter a valid 16-digit card number.",
        "error_expiry": "Please select the card's expiration month and year.",
        "error_pin": "Please enter your 4-digit PIN.",
        "unavailable_title": "Transaction not available",
        "unavailable": "This payment is no longer available.",
        "not_found": "This payment link is not valid.",
    },
    "ar": {
        "title": "بوابة الدفع كي نت",
        "merchant": "التاجر",
        "amount": "المبلغ",
        "reference": "المرجع",
        "bank": "اختر البنك",
        "choose_bank": "اختر البنك",
        "card_number": "رقم البطاقة",
        "expiry": "تاريخ الانتهاء",
        "month": "الشهر",
        "year": "السنة",
        "pin": "الرقم السري",
        "submit": "إرسال",
        "cancel": "إلغاء",
        "sandbox_note": "بيئة تجريبية: البطاقة 8888880000000001 والرقم السري 1234 تنجح؛ البطاقة 8888880000000002 تُرفض.",
        "switch_language": "English",
        "error_bank": "الرجاء اختيار البنك.",
        "error_card": "الرجاء إدخال رقم بطاقة صحيح من 16 رقمًا.",
        "error_expiry": "الرجاء اختيار شهر وسنة انتهاء البطاقة.",
        "error_pin": "الرجاء إدخال الرقم السري المكون من 4 أرقام.",
        "unavailable_title": "العملية غير متاحة",
        "unavailable": "هذه العملية لم تعد متاحة.",
        "not_found": "رابط الدفع هذا غير صالح.",
    },
}


class Outcome(str, Enum):
    CAPTURED = "captured"
    DECLINED = "declined"
    CANCELED = "canceled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a page submission amounts to: an outcome, or an error to show (key into TEXTS)."""

    outcome: Outcome | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class KnetReceipt:
    """The fields KNET hands back for a transaction, in KNET's own vocabulary."""

    result: str  # CAPTURED | NOT CAPTURED | CANCELED
    payment_id: str  # 18 digits
    transaction_id: str | None  # 15 digits
    bank_reference: str | None  # 12 digits
    auth_code: str | None  # 6 characters
    post_date: str | None  # MMDD


@dataclass(frozen=True, slots=True)
class PageView:
    """What the page shows; the provider module fills it from its own payment record."""

    language: str
    merchant_name: str
    amount_fils: int
    reference: str
    action_url: str


def page_language(requested: str | None, default: str | None) -> str:
    for candidate in (requested, default):
        if candidate in LANGUAGES:
            return candidate  # type: ignore[return-value]
    return "en"


def is_expired(started_at: float, now: float, expire_after_s: float) -> bool:
    """More than the page's window has passed since the customer landed (or since creation)."""
    return now - started_at > expire_after_s


def _field(form: Mapping[str, str], name: str) -> str:
    return str(form.get(name, "") or "").strip()


def _card_number(form: Mapping[str, str]) -> str:
    """The card number as typed, without the spaces or dashes people group digits with."""
    return _field(form, "card_number").replace(" ", "").replace("-", "")


def decide(form: Mapping[str, str], started_at: float, now: float, expire_after_s: float,
           approve_expiry: str | None = None) -> Decision:
    """Judge a page submission. The card number and PIN are read here and go no further.

    `approve_expiry` ("MM/YYYY") applies KNET's manual instead of the card + PIN rule: the
    approving test card succeeds with that expiry and any 4-digit PIN, and declines otherwise."""
    if is_expired(started_at, now, expire_after_s):
        return Decision(Outcome.EXPIRED)
    if _field(form, "action") == "cancel":
        return Decision(Outcome.CANCELED)
    if _field(form, "bank") not in BANKS_BY_CODE:
        return Decision(None, "error_bank")
    card = _card_number(form)
    if len(card) != 16 or not card.isascii() or not card.isdigit():
        return Decision(None, "error_card")
    if _field(form, "expiry_month") not in EXPIRY_MONTHS or _field(form, "expiry_year") not in EXPIRY_YEARS:
        return Decision(None, "error_expiry")
    pin = _field(form, "pin")
    if len(pin) != 4 or not pin.isascii() or not pin.isdigit():
        return Decision(None, "error_pin")
    if approve_expiry is not None:
        expiry = f"{_field(form, 'expiry_month')}/{_field(form, 'expiry_year')}"
        approved = card == TEST_CARD_APPROVED and expiry == approve_expiry
        return Decision(Outcome.CAPTURED if approved else Outcome.DECLINED)
    if card == TEST_CARD_APPROVED and secrets.compare_digest(pin, TEST_PIN):
        return Decision(Outcome.CAPTURED)
    return Decision(Outcome.DECLINED)  # the declined test card, a wrong PIN, any other card


def _random_code(length: int) -> str:
    return "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(length))


def _digits(length: int) -> str:
    return str(secrets.choice("123456789")) + "".join(secrets.choice("0123456789") for _ in range(length - 1))


def receipt_for(outcome: Outcome, now: float) -> KnetReceipt | None:
    """KNET's answer for an outcome; None when KNET never processed a transaction (expired)."""
    post_date = datetime.fromtimestamp(now, KUWAIT_TIME).strftime("%m%d")
    if outcome is Outcome.CAPTURED:
        return KnetReceipt("CAPTURED", _digits(18), _digits(15), _digits(12), _random_code(6), post_date)
    if outcome is Outcome.DECLINED:
        return KnetReceipt("NOT CAPTURED", _digits(18), _digits(15), _digits(12), None, post_date)
    if outcome is Outcome.CANCELED:
        return KnetReceipt("CANCELED", _digits(18), None, None, None, None)
    return None


def render_page(view: PageView, error: str | None = None, bank: str = "", status_code: int = 200) -> Template:
    """The KNET form. Card digits and PIN are never put back into it, even after an error."""
    texts = TEXTS[view.language]
    other = "ar" if view.language == "en" else "en"
    return Template(
        PAGE_TEMPLATE,
        context={
            "t": texts,
            "language": view.language,
            "direction": "rtl" if view.language == "ar" else "ltr",
            "view": view,
            "amount": format_kwd(view.amount_fils, view.language),
            "banks": [(b.code, b.name_ar if view.language == "ar" else b.name_en) for b in BANKS],
            "months": EXPIRY_MONTHS,
            "years": EXPIRY_YEARS,
            "error": texts[error] if error else None,
            "selected_bank": bank if bank in BANKS_BY_CODE else "",
            # The page's own URL may carry a query already (Tap's `tap_process.aspx?chg=...`).
            "switch_url": f"{view.action_url}{'&' if '?' in view.action_url else '?'}language={other}",
        },
        status_code=status_code,
    )


def render_message(language: str, message: str, status_code: int) -> Template:
    """A plain KNET-styled message page (`message` is a key into TEXTS)."""
    texts = TEXTS[page_language(language, None)]
    return Template(
        RESULT_TEMPLATE,
        context={
            "t": texts,
            "language": page_language(language, None),
            "direction": "rtl" if language == "ar" else "ltr",
            "message": texts[message],
        },
        status_code=status_code,
    )


@dataclass(frozen=True, slots=True)
class PageState:
    """A payment as the page sees it."""

    view: PageView
    open: bool  # still waiting for the customer
    started_at: float  # when the customer landed: the expiry window counts from here


class PageBackend(Protocol):
    """What a provider's sandbox supplies so the shared page can run its payments."""

    async def land(self, token: str, now: float) -> PageState | None:
        """The payment behind `token`, its first landing recorded; None for an unknown token."""
        ...

    async def finish(self, token: str, outcome: Outcome, receipt: KnetReceipt | None, now: float) -> str | None:
        """Apply the outcome if the payment is still open (idempotent under concurrency).

        Returns the URL to send the browser to, or None when the payment was no longer open."""
        ...

    async def expire_after_s(self) -> float:
        ...


def _see_other(url: str) -> Response:
    return Response(content=b"", status_code=303, headers={"Location": url}, media_type="text/plain")


async def show_page(backend: PageBackend, token: str, language: str | None) -> Response:
    """GET: the form; 404 for an unknown token, 410 once the payment is decided or expired."""
    now = time.time()
    state = await backend.land(token, now)
    if state is None:
        return render_message(page_language(language, None), "not_found", 404)
    view = replace(state.view, language=page_language(language, state.view.language))
    if state.open and is_expired(state.started_at, now, await backend.expire_after_s()):
        # A reload after the window: KNET voids the transaction there and then.
        await backend.finish(token, Outcome.EXPIRED, None, now)
        return render_message(view.language, "unavailable", 410)
    if not state.open:
        return render_message(view.language, "unavailable", 410)
    return render_page(view)


async def submit_page(backend: PageBackend, token: str, form: Mapping[str, str],
                      approve_expiry: str | None = None) -> Response:
    """POST: judge the form, apply the outcome, send the browser back to the merchant (303).

    Invalid input re-renders the form with a 422; the card number and PIN are neither stored,
    logged nor echoed. `approve_expiry`: see `decide`."""
    now = time.time()
    state = await backend.land(token, now)
    if state is None:
        return render_message(page_language(_field(form, "language"), None), "not_found", 404)
    view = replace(state.view, language=page_language(_field(form, "language"), state.view.language))
    if not state.open:
        return render_message(view.language, "unavailable", 410)
    decision = decide(form, state.started_at, now, await backend.expire_after_s(), approve_expiry)
    if decision.outcome is None:
        return render_page(view, decision.error, bank=_field(form, "bank"), status_code=422)
    target = await backend.finish(token, decision.outcome, receipt_for(decision.outcome, now), now)
    if target is None:  # decided meanwhile by another request (a double submit)
        return render_message(view.language, "unavailable", 410)
    return _see_other(target)
