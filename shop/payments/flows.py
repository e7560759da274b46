"""The payment journeys: checkout, browser return, webhook, retry. HTTP-free and testable."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

from shop.checkout.forms import CheckoutDetails
from shop.i18n import current_language, gettext as _
from shop.money import format_kwd
from shop.orders import stock
from shop.orders.services import OrderError, place_order
from shop.orders.tables import Order, OrderLine
from shop.db import write_transaction
from shop.payments.providers.base import LINK_CHANNELS, BadSignature, Observation, Provider, ProviderError
from shop.payments.service import (
    Applied,
    StartOutcome,
    apply_observation,
    find_attempt,
    is_open,
    latest_attempt,
    record_event,
    start_attempt,
    utcnow,
)
from shop.payments.states import CAPTURED_PAYMENT, OPEN_PAYMENT, OrderStatus, PaymentStatus, check_order_move
from shop.payments.tables import PaymentAttempt

log = logging.getLogger("shop.payments")
RETURN_RECHECK = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    order: dict[str, Any]
    redirect_url: str = ""  # where the browser goes next (provider page), "" = the order page
    form_fields: dict[str, str] | None = None


def _resume(order: dict[str, Any], outcome: StartOutcome | None, attempt: dict[str, Any] | None) -> CheckoutResult:
    if outcome is not None and outcome.redirect_url:
        return CheckoutResult(order, outcome.redirect_url, outcome.form_fields or None)
    if outcome is None and is_open(attempt) and attempt and attempt["redirect_url"]:
        import json

        form = attempt["redirect_form"]
        fields = json.loads(form) if isinstance(form, str) else form
        return CheckoutResult(order, attempt["redirect_url"], fields or None)
    return CheckoutResult(order)


def check_payable(total_fils: int, provider: Provider) -> None:
    """Refuse, never round: the amount charged must always equal the order total."""
    step = provider.capabilities.amount_step_fils
    if total_fils % step:
        raise OrderError(_("This total cannot be paid with the current payment method: it must be a multiple "
                           "of %(step)s.", step=format_kwd(step, current_language.get())))


async def checkout(cart_token: str, details: CheckoutDetails, language: str, provider: Provider,
                   public_url: str) -> CheckoutResult:
    """Place the cart's order (once) and start its payment (once). Raises OrderError."""
    placed = await place_order(cart_token, details, language, provider.slug,
                               check_total=lambda total: check_payable(total, provider))
    order = placed.order
    attempt = None if placed.created else await latest_attempt(order["id"])
    if attempt is not None:
        # A second press: resume the payment already started, never start another.
        return _resume(order, None, attempt)
    outcome = await start_attempt(order, provider, public_url, number=1)
    if outcome.attempt is None:
        # A concurrent press started it a moment ago: resume that one if it already has a page.
        return _resume(order, None, await latest_attempt(order["id"]))
    return _resume(order, outcome, None)


async def retry(order: dict[str, Any], provider: Provider, public_url: str) -> CheckoutResult:
    """A new attempt for an order whose last attempt failed (or never reached the customer).

    Re-reserves stock if the failure released it. Raises OrderError."""
    attempt = await latest_attempt(order["id"])
    if attempt is not None and is_open(attempt) and attempt["redirect_url"]:
        return _resume(order, None, attempt)
    retryable = order["status"] == OrderStatus.PAYMENT_FAILED or (
        order["status"] == OrderStatus.PENDING_PAYMENT and attempt is not None and not attempt["redirect_url"]
    )
    if not retryable:
        raise OrderError(_("This order cannot be paid again."))
    check_payable(order["total_fils"], provider)
    if order["status"] == OrderStatus.PAYMENT_FAILED:
        await _reopen(order)
        order = await Order.select().where(Order.id == order["id"]).first()
    outcome = await start_attempt(order, provider, public_url, number=(attempt["number"] if attempt else 0) + 1)
    if outcome.attempt is None:
        return _resume(order, None, await latest_attempt(order["id"]))
    return _resume(order, outcome, None)


async def send_payment_link(order: dict[str, Any], provider: Provider, public_url: str, channel: str) -> StartOutcome:
    """Staff send a payment link for an order awaiting payment (taken by phone, or whose payment
    failed). The link is a new attempt of the order: its payment comes back through the same
    return, webhook and inquiry as any other. Raises OrderError; the outcome may still carry
    `error` ("unavailable": the provider may have made the link; "rejected": it made none)."""
    if not provider.capabilities.payment_links:
        raise OrderError(_("The active payment provider cannot send payment links."))
    if channel not in LINK_CHANNELS:
        raise OrderError(_("Choose how to send the link: shown here, by email or by SMS."))
    last = await latest_attempt(order["id"])
    if is_open(last):
        # Two payable attempts at once could both be paid, and one whose creation went unanswered
        # may exist at the provider (a link may even have been sent): wait until it is over.
        raise OrderError(_("A payment of this order is still open. Send a link once it has ended."))
    if order["status"] not in (OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED):
        raise OrderError(_("Only an order awaiting payment can be sent a payment link."))
    check_payable(order["total_fils"], provider)
    if order["status"] == OrderStatus.PAYMENT_FAILED:
        await _reopen(order)
        order = await Order.select().where(Order.id == order["id"]).first()
    outcome = await start_attempt(order, provider, public_url, number=(last["number"] if last else 0) + 1,
                                  link_channel=channel)
    if outcome.attempt is None:
        raise OrderError(_("A payment of this order is being started right now. Look again in a moment."))
    return outcome


async def _reopen(order: dict[str, Any]) -> None:
    async with write_transaction(Order._meta.db):
        current = await Order.select(Order.status, Order.stock_state).where(Order.id == order["id"]).first()
        if current is None or current["status"] != OrderStatus.PAYMENT_FAILED:
            return
        if current["stock_state"] == "released":
            lines = await OrderLine.select(OrderLine.product, OrderLine.quantity).where(OrderLine.order == order["id"])
            if await stock.reserve(lines) is not None:
                raise OrderError(_("Sorry, some items of this order are no longer in stock."))
        check_order_move(OrderStatus.PAYMENT_FAILED, OrderStatus.PENDING_PAYMENT)
        await Order.update({Order.status: OrderStatus.PENDING_PAYMENT.value, Order.stock_state: "reserved"}).where(
            Order.id == order["id"]
        )


async def handle_return(provider: Provider, params: Mapping[str, str]) -> dict[str, Any] | None:
    """The customer is back. Verify what can be verified, ask the provider, apply. Returns the order.

    Raises BadSignature for a forged signed return. A provider that does not answer leaves the
    attempt pending (the order page then shows "verifying")."""
    hint = provider.parse_return(params)  # may raise BadSignature
    attempt = await find_attempt(provider.attempt_slugs, hint.provider_payment_id, hint.merchant_reference)
    if attempt is None:
        return None
    await record_event(attempt["id"], provider.slug, "return", hint.payload,
                       signature_ok=True if hint.verified else None)
    try:
        observation = await provider.inquire(attempt["provider_payment_id"] or hint.provider_payment_id,
                                             attempt["merchant_reference"])
    except ProviderError as exc:
        await record_event(attempt["id"], provider.slug, "inquiry", {"error": str(exc)}, note="no answer")
        observation = None
    if observation is not None:
        if observation.merchant_reference and observation.merchant_reference != attempt["merchant_reference"]:
            await record_event(attempt["id"], provider.slug, "inquiry", observation.payload,
                               note="ignored: the provider's payment belongs to another reference")
        else:
            await apply_observation(attempt["id"], observation, "inquiry")
    # Still open: the customer is waiting on the order page, so ask again soon, not at expiry;
    # at the very next pass when the provider gave no answer just now.
    recheck = utcnow() + (RETURN_RECHECK if observation is not None else timedelta(0))
    await PaymentAttempt.update({PaymentAttempt.next_check_at: recheck, PaymentAttempt.checks: 0}).where(
        (PaymentAttempt.id == attempt["id"]) & PaymentAttempt.status.is_in([s.value for s in OPEN_PAYMENT])
    )
    return await Order.select().where(Order.id == attempt["order"]).first()


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    observations: list[Observation]
    results: list[Applied]

    @property
    def duplicates(self) -> int:
        return sum(r.duplicate for r in self.results)


async def handle_webhook(provider: Provider, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
    """Verify over the raw body, then store and apply each event once. Raises BadSignature."""
    observations = provider.verify_webhook(headers, body)
    results = []
    for observation in observations:
        attempt = await find_attempt(provider.attempt_slugs, observation.provider_payment_id, observation.merchant_reference)
        if attempt is None:
            # Not ours (or not yet known): keep it for the timeline, change nothing.
            await record_event(None, provider.slug, "webhook", observation.payload, event_type=observation.event_type,
                               provider_event_id=None, signature_ok=True, note="no matching payment attempt")
            results.append(Applied(None))
            continue
        if not observation.trusted and observation.refund_status is None and \
                PaymentStatus(attempt["status"]) in CAPTURED_PAYMENT:
            # Payment news about money already taken cannot move it: no need to spend one of the
            # provider's rate-limited status calls on each repeated copy.
            await record_event(attempt["id"], provider.slug, "webhook", observation.payload,
                               event_type=observation.event_type, signature_ok=None, note="unsigned: already captured")
            results.append(Applied(attempt["id"], duplicate=True))
            continue
        if not observation.trusted:
            # An unsigned notification is only a hint: record it, then ask the provider.
            await record_event(attempt["id"], provider.slug, "webhook", observation.payload,
                               event_type=observation.event_type, signature_ok=None, note="unsigned: confirming")
            try:
                observation = await provider.inquire(attempt["provider_payment_id"], attempt["merchant_reference"])
            except ProviderError as exc:
                await record_event(attempt["id"], provider.slug, "inquiry", {"error": str(exc)}, note="no answer")
                results.append(Applied(attempt["id"]))
                continue
            results.append(await apply_observation(attempt["id"], observation, "inquiry"))
            continue
        results.append(await apply_observation(attempt["id"], observation, "webhook", signature_ok=True))
    return WebhookOutcome(observations, results)


__all__ = ["BadSignature", "CheckoutResult", "OrderError", "PaymentStatus", "checkout", "handle_return",
           "handle_webhook", "retry", "send_payment_link"]
