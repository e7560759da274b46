"""Staff orders: the searchable list, the order page with its payment timeline, the actions
(re-check, fulfil, cancel, refund) and the "needs attention" view.

Handlers parse, call one service (`shop.orders.actions`, `shop.payments.refunds`) and pick a
template; the read-side queries for these pages live here, above the controller."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import reduce
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from piccolo.columns.combination import WhereRaw

from shop.clock import KUWAIT_TIME, kuwait_time_text
from shop.checkout.kuwait import AREAS_BY_SLUG, GOVERNORATES_BY_SLUG
from shop.db import is_postgres
from shop.i18n import gettext as _
from shop.money import parse_kwd
from shop.orders import actions
from shop.orders.services import order_lines
from shop.orders.tables import Order
from shop.payments import refunds
from shop.payments.redact import redact
from shop.payments.registry import ADAPTERS, UnknownProvider
from shop.payments.states import CAPTURED_PAYMENT, OPEN_PAYMENT, OrderStatus, PaymentStatus
from shop.payments.tables import PaymentAttempt, PaymentEvent, Refund
from shop.staff.auth import Role
from shop.staff.guards import current_staff, roles
from shop.staff.pages import staff_template
from shop.web.pages import active_provider, app_settings, flash, is_htmx, provider_named, see_other

PAGE_SIZE = 25
STUCK_REFUND_AFTER = timedelta(hours=1)
UNSETTLED_AFTER = timedelta(minutes=15)  # past expiry, beyond the reconciler's grace
ATTENTION_LIMIT = 200
MAX_QUERY = 100
DETAIL = "staff/orders/detail.html"
ORDER_FRAGMENT = "staff/orders/_order.html"
TIMELINE_FRAGMENT = "staff/orders/_timeline.html"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def order_status_label(name: str) -> str:
    return {
        "pending_payment": _("Awaiting payment"), "paid": _("Paid"), "fulfilled": _("Fulfilled"),
        "payment_failed": _("Payment failed"), "cancelled": _("Cancelled"), "expired": _("Expired"),
        "partially_refunded": _("Partially refunded"), "refunded": _("Refunded"),
    }.get(name, name or "-")


def payment_status_label(name: str) -> str:
    return {
        "initiated": _("Initiated"), "pending": _("Pending"), "captured": _("Captured"), "declined": _("Declined"),
        "cancelled": _("Cancelled"), "expired": _("Expired"), "failed": _("Failed"),
        "refund_pending": _("Refund pending"), "partially_refunded": _("Partially refunded"),
        "refunded": _("Refunded"),
    }.get(name, name or "-")


def refund_status_label(name: str) -> str:
    return {"requested": _("Requested"), "pending": _("Pending"), "succeeded": _("Succeeded"),
            "failed": _("Failed")}.get(name, name)


def event_kind_label(name: str) -> str:
    return {"request": _("Request sent"), "response": _("Response"), "return": _("Customer return"),
            "webhook": _("Webhook"), "inquiry": _("Status inquiry"), "refund": _("Refund"),
            "note": _("Note")}.get(name, name)


VIEW_HELPERS = {
    "local_time": kuwait_time_text, "order_status_label": order_status_label,
    "payment_status_label": payment_status_label, "refund_status_label": refund_status_label,
    "event_kind_label": event_kind_label,
}


class BadFilter(ValueError):
    """A filter value we do not understand; the message is for staff."""


# ---------------------------------------------------------------- the list


@dataclass(frozen=True, slots=True)
class OrderFilters:
    q: str = ""
    status: str = ""
    payment_status: str = ""
    provider: str = ""
    date_from: str = ""
    date_to: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str]) -> OrderFilters:
        """Checked filters. Raises BadFilter naming the first bad value."""
        status = params.get("status", "").strip()
        if status and status not in {s.value for s in OrderStatus}:
            raise BadFilter(_("Unknown order status."))
        payment = params.get("payment_status", "").strip()
        if payment and payment not in {s.value for s in PaymentStatus}:
            raise BadFilter(_("Unknown payment status."))
        provider = params.get("provider", "").strip()
        if provider and provider not in ADAPTERS and provider != "knet":
            raise BadFilter(_("Unknown payment provider."))
        dates = []
        for name in ("from", "to"):
            text = params.get(name, "").strip()
            if text:
                try:
                    date.fromisoformat(text)
                except ValueError:
                    raise BadFilter(_("Dates look like 2025-01-31.")) from None
            dates.append(text)
        if all(dates) and dates[0] > dates[1]:
            raise BadFilter(_("The start date is after the end date."))
        page_text = params.get("page", "1").strip() or "1"
        if not page_text.isdigit() or not 1 <= int(page_text) <= 100000:
            raise BadFilter(_("Unknown page."))
        return cls(params.get("q", "").strip()[:MAX_QUERY], status, payment, provider, dates[0], dates[1],
                   int(page_text))


def _like(column: Any, pattern: str) -> Any:
    """Case-insensitive match: ILIKE on PostgreSQL; SQLite's LIKE already ignores ASCII case."""
    return column.ilike(pattern) if is_postgres(Order._meta.db) else column.like(pattern)


def _search_condition(q: str) -> Any:
    # `%` and `_` stay (they only widen a staff search; provider ids contain `_`); a backslash
    # would be PostgreSQL's LIKE escape, so it goes.
    text = q.replace("\\", " ").strip()
    pattern = f"%{text}%"
    on_order = (_like(Order.reference, pattern) | _like(Order.customer_name, pattern) | _like(Order.email, pattern)
                | _like(Order.phone, pattern))
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 4 and digits != text:
        on_order |= _like(Order.phone, f"%{digits}%")  # "5512 3456" finds +96555123456
    on_attempt = PaymentAttempt.select(PaymentAttempt.order).where(
        _like(PaymentAttempt.knet_payment_id, pattern) | _like(PaymentAttempt.knet_track_id, pattern)
        | _like(PaymentAttempt.merchant_reference, pattern) | _like(PaymentAttempt.knet_transaction_id, pattern)
        | _like(PaymentAttempt.knet_bank_reference, pattern) | _like(PaymentAttempt.provider_payment_id, pattern)
    )
    return on_order | Order.id.is_in(on_attempt)


def _conditions(filters: OrderFilters) -> list[Any]:
    conditions: list[Any] = []
    if filters.q.replace("\\", "").strip():
        conditions.append(_search_condition(filters.q))
    if filters.status:
        conditions.append(Order.status == filters.status)
    if filters.provider:
        conditions.append(Order.provider == filters.provider)
    if filters.payment_status:
        # The order's latest attempt is in that state (as its page shows).
        conditions.append(WhereRaw(
            'shop_order.id IN (SELECT a."order" FROM payment_attempt a WHERE a.status = {} AND a.number = '
            '(SELECT MAX(b.number) FROM payment_attempt b WHERE b."order" = a."order"))',
            filters.payment_status,
        ))
    if filters.date_from:
        conditions.append(Order.created_at >= datetime.combine(date.fromisoformat(filters.date_from), time(), KUWAIT_TIME))
    if filters.date_to:
        end = datetime.combine(date.fromisoformat(filters.date_to) + timedelta(days=1), time(), KUWAIT_TIME)
        conditions.append(Order.created_at < end)
    return conditions


async def latest_attempts(order_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not order_ids:
        return {}
    rows = await PaymentAttempt.select(
        PaymentAttempt.order, PaymentAttempt.number, PaymentAttempt.status, PaymentAttempt.knet_payment_id,
        PaymentAttempt.provider,
    ).where(PaymentAttempt.order.is_in(order_ids)).order_by(PaymentAttempt.number)
    return {row["order"]: row for row in rows}  # the highest number wins


async def find_orders(filters: OrderFilters) -> dict[str, Any]:
    """One page of orders, newest first, with each one's latest payment."""
    conditions = _conditions(filters)
    where = reduce(lambda a, b: a & b, conditions) if conditions else None
    count_query = Order.count()
    select = Order.select(
        Order.id, Order.reference, Order.status, Order.customer_name, Order.email, Order.phone, Order.total_fils,
        Order.provider, Order.created_at, Order.needs_attention,
    ).order_by(Order.created_at, ascending=False).order_by(Order.id, ascending=False)
    if where is not None:
        count_query = count_query.where(where)
        select = select.where(where)
    total = await count_query
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(filters.page, pages)
    orders = await select.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    attempts = await latest_attempts([o["id"] for o in orders])
    for order in orders:
        attempt = attempts.get(order["id"])
        order["payment_status"] = attempt["status"] if attempt else ""
        order["knet_payment_id"] = attempt["knet_payment_id"] if attempt else ""
    return {"orders": orders, "total": total, "page": page, "pages": pages}


# ---------------------------------------------------------------- one order


def pretty_payload(payload: Any) -> str:
    """The stored payload, redacted once more (belt and braces), indented for reading."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return str(redact(payload))
    return json.dumps(redact(payload), indent=2, ensure_ascii=False, sort_keys=True, default=str)


async def order_by_reference(reference: str) -> dict[str, Any] | None:
    if not reference or len(reference) > 32:
        return None
    return await Order.select().where(Order.reference == reference).first()


async def order_view(order: dict[str, Any]) -> dict[str, Any]:
    """Everything the order page shows: lines, customer, flags, attempts with events and refunds."""
    attempts = await PaymentAttempt.select().where(PaymentAttempt.order == order["id"]).order_by(PaymentAttempt.number)
    ids = [a["id"] for a in attempts]
    events = await PaymentEvent.select().where(PaymentEvent.attempt.is_in(ids)).order_by(PaymentEvent.id) if ids else []
    refund_rows = await Refund.select().where(Refund.attempt.is_in(ids)).order_by(Refund.id) if ids else []
    for attempt in attempts:
        attempt["events"] = [
            {**e, "payload_text": pretty_payload(e["payload"])} for e in events if e["attempt"] == attempt["id"]
        ]
        attempt["refunds"] = [
            {**r, "provider_refund_id": "" if (r["provider_refund_id"] or "").startswith(refunds.LOCAL_ID_PREFIX)
             else r["provider_refund_id"] or ""}
            for r in refund_rows if r["attempt"] == attempt["id"]
        ]
        attempt["refundable_fils"] = await refunds.refundable_fils(attempt)
        attempt["captured"] = PaymentStatus(attempt["status"]) in CAPTURED_PAYMENT
    latest = attempts[-1] if attempts else None
    area = AREAS_BY_SLUG.get(order["area"])
    open_refund = any(r["status"] in refunds.OPEN_REFUND for r in refund_rows)
    return {
        "order": order,
        "lines": await order_lines(order["id"]),
        "attempts": attempts,
        "payment_status": latest["status"] if latest else "",
        "flags": [r for r in (order["attention_reason"] or "").split("\n") if r],
        "governorate": GOVERNORATES_BY_SLUG.get(order["governorate"]),
        "area": area[1] if area else None,
        "refundable": [a for a in attempts if a["refundable_fils"] > 0],
        "open_refund": open_refund,
        # The timeline polls while something is still expected from the provider.
        "live": open_refund or bool(latest and PaymentStatus(latest["status"]) in OPEN_PAYMENT),
        **VIEW_HELPERS,
    }


# ---------------------------------------------------------------- needs attention


async def attention_items(now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """What staff must look at: flagged orders, paid without stock, stuck refunds, unsettled payments."""
    now = now or utcnow()
    flagged = await Order.select(
        Order.reference, Order.status, Order.attention_reason, Order.total_fils, Order.updated_at,
    ).where(Order.needs_attention.eq(True)).order_by(Order.updated_at, ascending=False).limit(ATTENTION_LIMIT)
    for row in flagged:
        row["reasons"] = [r for r in (row["attention_reason"] or "").split("\n") if r]
    short = await Order.select(Order.reference, Order.status, Order.total_fils, Order.paid_at).where(
        Order.stock_state == "short").order_by(Order.paid_at, ascending=False).limit(ATTENTION_LIMIT)
    stuck = await Refund.select(
        Refund.id, Refund.amount_fils, Refund.status, Refund.created_at, Refund.requested_by,
        Refund.attempt.order.reference.as_alias("reference"), Refund.attempt.provider.as_alias("provider"),
    ).where(Refund.status.is_in(list(refunds.OPEN_REFUND)) & (Refund.created_at < now - STUCK_REFUND_AFTER)
            ).order_by(Refund.created_at).limit(ATTENTION_LIMIT)
    unsettled = await PaymentAttempt.select(
        PaymentAttempt.merchant_reference, PaymentAttempt.status, PaymentAttempt.provider, PaymentAttempt.expires_at,
        PaymentAttempt.checks, PaymentAttempt.amount_fils, PaymentAttempt.order.reference.as_alias("reference"),
    ).where(PaymentAttempt.status.is_in([s.value for s in OPEN_PAYMENT])
            & (PaymentAttempt.expires_at < now - UNSETTLED_AFTER)).order_by(PaymentAttempt.expires_at).limit(ATTENTION_LIMIT)
    return {"flagged": flagged, "short": short, "stuck_refunds": stuck, "unsettled": unsettled}


# ---------------------------------------------------------------- the controller


def _message(kind: str, text: str) -> dict[str, str]:
    return {"kind": kind, "text": text}


class StaffOrdersController(Controller):
    path = "/staff"

    @get("/orders", name="staff-orders", opt=roles(Role.OPERATIONS, Role.FINANCE))
    async def list_orders(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
        context: dict[str, Any] = {"filters": params, "statuses": list(OrderStatus),
                                   "payment_statuses": list(PaymentStatus), "providers": sorted(ADAPTERS),
                                   **VIEW_HELPERS}
        try:
            filters = OrderFilters.parse(params)
        except BadFilter as exc:
            result = {"orders": [], "total": 0, "page": 1, "pages": 1}
            return staff_template(request, "staff/orders/list.html", "staff/orders/_results.html", 422,
                                  result=result, error=str(exc), **context)
        return staff_template(request, "staff/orders/list.html", "staff/orders/_results.html",
                              result=await find_orders(filters), error="", **context)

    @get("/orders/{reference:str}", name="staff-order", opt=roles(Role.OPERATIONS, Role.FINANCE))
    async def show(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        return staff_template(request, DETAIL, ORDER_FRAGMENT, **await order_view(order))

    @get("/orders/{reference:str}/timeline", name="staff-order-timeline", opt=roles(Role.OPERATIONS, Role.FINANCE))
    async def timeline(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        # Polled by the page: the order's states in the header follow along (out of band).
        return staff_template(request, DETAIL, TIMELINE_FRAGMENT, oob_states=is_htmx(request),
                              **await order_view(order))

    @post("/orders/{reference:str}/recheck", name="staff-order-recheck", opt=roles(Role.OPERATIONS, Role.FINANCE))
    async def recheck(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        try:
            outcome = await actions.recheck(order["id"], current_staff(request), self._providers(request))
        except actions.ActionError as exc:
            return await self._after(request, reference, _message("error", exc.message), exc.status_code)
        if outcome.ignored:
            return await self._after(request, reference, _message("error", outcome.ignored), 409)
        text = _("Checked with the provider: payment %(status)s.",
                 status=payment_status_label(outcome.applied.status_after if outcome.applied else ""))
        if any(r.unanswered for r in outcome.refunds):
            text += " " + _("A refund is still waiting for the provider's answer.")
        return await self._after(request, reference, _message("info", text))

    @post("/orders/{reference:str}/fulfil", name="staff-order-fulfil", opt=roles(Role.OPERATIONS))
    async def fulfil(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        try:
            await actions.fulfil(order["id"], current_staff(request))
        except actions.ActionError as exc:
            return await self._after(request, reference, _message("error", exc.message), exc.status_code)
        return await self._after(request, reference, _message("info", _("Marked fulfilled.")))

    @post("/orders/{reference:str}/cancel", name="staff-order-cancel", opt=roles(Role.OPERATIONS, Role.FINANCE))
    async def cancel(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        form = await request.form()
        reason = str(form.get("reason", ""))
        try:
            outcome = await actions.cancel(order["id"], current_staff(request), reason, form.get("confirm") == "yes",
                                           self._providers(request))
        except actions.ActionError as exc:
            return await self._after(request, reference, _message("error", exc.message), exc.status_code)
        except refunds.RefundError as exc:
            return await self._after(request, reference, None, 422, confirm_cancel=True,
                                     cancel_errors={exc.field: str(exc)}, cancel_form={"reason": reason},
                                     cancel_refund_fils=await actions.cancellation_refund(order["id"]))
        if outcome.needs_confirmation:
            # Nothing changed yet: show what will be refunded and ask again (the no-JS path too).
            return await self._after(request, reference, None, 200, confirm_cancel=True,
                                     cancel_form={"reason": reason}, cancel_refund_fils=outcome.refund_fils,
                                     redirect=False)
        text = _("Order cancelled.")
        if outcome.refunds:
            text = _("Order cancelled; a refund of the paid amount was requested.")
        if outcome.unanswered:
            text += " " + _("The provider did not answer yet: the refund stays requested and is sent again with the next re-check.")
        return await self._after(request, reference, _message("info", text))

    @post("/orders/{reference:str}/refund", name="staff-order-refund", opt=roles(Role.FINANCE))
    async def refund(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        form = await request.form()
        values = {name: str(form.get(name, ""))[:2100] for name in ("attempt", "amount", "reason")}
        errors: dict[str, str] = {}
        attempt = None
        if values["attempt"].isdigit() and len(values["attempt"]) <= 12:
            attempt = await PaymentAttempt.select().where(
                (PaymentAttempt.id == int(values["attempt"])) & (PaymentAttempt.order == order["id"])).first()
        if attempt is None:
            errors["amount"] = _("Choose a payment to refund.")
        try:
            amount = parse_kwd(values["amount"])
        except ValueError:
            errors["amount"] = _("Enter an amount in KWD with at most 3 decimals, for example 2.500.")
            amount = 0
        if not values["reason"].strip():
            errors["reason"] = _("Give a reason for the refund.")
        if not errors and attempt is not None:
            try:
                provider = provider_named(request, attempt["provider"])
                outcome = await refunds.request_refund(provider, attempt["id"], amount, values["reason"],
                                                       current_staff(request))
            except UnknownProvider:
                errors["amount"] = _("The payment provider of this order is not available.")
            except refunds.RefundError as exc:
                errors[exc.field] = str(exc)
            else:
                if outcome.status == "failed":
                    text = _("The provider refused the refund: %(reason)s", reason=outcome.refund.get("failure_reason", ""))
                    return await self._after(request, reference, _message("error", text))
                if outcome.unanswered:
                    text = _("The refund was recorded, but the provider did not answer yet. It stays requested and is sent again with the next re-check.")
                    return await self._after(request, reference, _message("error", text))
                return await self._after(request, reference, _message("info", _("Refund requested.")))
        return await self._after(request, reference, None, 422, refund_errors=errors, refund_form=values)

    @post("/orders/{reference:str}/payment-link", name="staff-order-payment-link", opt=roles(Role.OPERATIONS))
    async def payment_link(self, request: Request, reference: FromPath[str]) -> Response:
        order = await self._order(reference)
        channel = str((await request.form()).get("channel", ""))
        try:
            outcome = await actions.send_payment_link(order["id"], current_staff(request), await active_provider(request),
                                                      app_settings(request).public_url, channel)
        except actions.ActionError as exc:
            return await self._after(request, reference, _message("error", exc.message), exc.status_code)
        if outcome.unanswered:
            text = _("The payment provider did not answer. The link may have been made: the re-check will tell.")
            return await self._after(request, reference, _message("error", text))
        if channel == "email":
            text = _("Payment link sent by email to %(to)s: %(url)s", to=order["email"], url=outcome.url)
        elif channel == "sms":
            text = _("Payment link sent by SMS to %(to)s: %(url)s", to=order["phone"], url=outcome.url)
        else:
            text = _("Payment link made. Send it to the customer: %(url)s", url=outcome.url)
        return await self._after(request, reference, _message("info", text))

    @get("/attention", name="staff-attention", opt=roles(Role.OPERATIONS, Role.FINANCE))
    async def attention(self, request: Request) -> Response:
        return staff_template(request, "staff/orders/attention.html", **await attention_items(), **VIEW_HELPERS)

    # -- helpers

    @staticmethod
    async def _order(reference: str) -> dict[str, Any]:
        order = await order_by_reference(reference)
        if order is None:
            raise NotFoundException()
        return order

    @staticmethod
    def _providers(request: Request) -> actions.Providers:
        return lambda slug: provider_named(request, slug)

    @staticmethod
    async def _after(request: Request, reference: str, message: dict[str, str] | None, status_code: int = 200,
                     redirect: bool = True, **context: Any) -> Response:
        """htmx: the order fragment, refreshed, with the message. A plain form: after a success,
        a redirect to the order page (message flashed); otherwise the whole page, with status."""
        ok = status_code < 400
        if not is_htmx(request) and ok and redirect:
            if message:
                flash(request, message["text"], message["kind"])
            return see_other(f"/staff/orders/{reference}")
        order = await StaffOrdersController._order(reference)
        return staff_template(request, DETAIL, ORDER_FRAGMENT, status_code, notice=message,
                              **await order_view(order), **context)
