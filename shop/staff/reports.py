"""Reports for staff: sales figures, the dashboard chart, CSV exports, and the audit and outbox listings.

Plain async functions over the database, testable without HTTP. Money stays in integer fils and
becomes a 3-decimal KWD string only in the CSV cell or on the page.

Days are the shop's business days in Kuwait time (UTC+3 all year: Kuwait has no daylight saving),
the same day KNET posts a payment on. A sale counts on the day its payment was captured
(`PaymentAttempt.finalized_at`), a refund on the day it succeeded (`Refund.updated_at`): so a
day's sales are exactly the sum of the `net` column of that day's reconciliation CSV.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, AsyncIterator, Iterable, Sequence

from piccolo.query.functions.aggregate import Count

from shop.checkout.kuwait import AREAS_BY_SLUG, GOVERNORATES_BY_SLUG
from shop.i18n import gettext as _
from shop.i18n import localized
from shop.money import fils_to_str
from shop.notifications.tables import OutboxEmail
from shop.orders.tables import Order
from shop.payments.states import CAPTURED_PAYMENT, FAILED_PAYMENT, OrderStatus
from shop.clock import KUWAIT_TIME, business_day, kuwait_time_text
from shop.payments.tables import PaymentAttempt, Refund
from shop.staff.tables import AuditLog

DASHBOARD_DAYS = 30
MAX_EXPORT_DAYS = 366
EXPORT_BATCH = 500  # orders per query while streaming the orders CSV
MAX_RECONCILIATION_ROWS = 20_000  # one day's payments; far beyond a real day, it only bounds memory
AUDIT_PAGE_SIZE = 50
OUTBOX_PAGE_SIZE = 50
MAX_PAGE = 100_000
OUTBOX_STATUSES = ("pending", "sent", "kept", "failed")
BOM = "\ufeff"  # lets Excel read the file as UTF-8 (Arabic names)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ReportError(ValueError):
    """The report cannot be made as asked (bad dates, too large); the message is for staff."""


# ---------------------------------------------------------------- business days


def today(now: datetime | None = None) -> date:
    return business_day(now or datetime.now(timezone.utc))


def day_span(first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering the Kuwait days first..last inclusive."""
    start = datetime.combine(first, time(0), KUWAIT_TIME).astimezone(timezone.utc)
    end = datetime.combine(last + timedelta(days=1), time(0), KUWAIT_TIME).astimezone(timezone.utc)
    return start, end


def parse_day(text: str, message: str) -> date:
    """A strict YYYY-MM-DD date. Raises ReportError(message)."""
    text = (text or "").strip()
    if not _ISO_DAY.match(text):
        raise ReportError(message)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ReportError(message) from None
    if not 2000 <= day.year <= 2999:
        raise ReportError(message)
    return day


def export_range(from_text: str | None, to_text: str | None, now: datetime | None = None) -> tuple[date, date]:
    """The validated (first, last) days of an export. Missing: the last 30 days up to today.

    Raises ReportError for a malformed date, a reversed range or more than MAX_EXPORT_DAYS days."""
    last = parse_day(to_text, _("The end date must be a date written as YYYY-MM-DD.")) if to_text else today(now)
    first = (parse_day(from_text, _("The start date must be a date written as YYYY-MM-DD.")) if from_text
             else last - timedelta(days=DASHBOARD_DAYS - 1))
    if first > last:
        raise ReportError(_("The start date is after the end date."))
    if (last - first).days + 1 > MAX_EXPORT_DAYS:
        raise ReportError(_("Choose a range of at most %(days)s days.", days=MAX_EXPORT_DAYS))
    return first, last


def reconciliation_day(text: str | None, now: datetime | None = None) -> date:
    """The validated day of a reconciliation file (today when missing). Raises ReportError."""
    return parse_day(text, _("The date must be a date written as YYYY-MM-DD.")) if text else today(now)


# ---------------------------------------------------------------- sales and the dashboard


@dataclass(frozen=True, slots=True)
class DaySales:
    day: date
    captured_fils: int = 0
    refunded_fils: int = 0

    @property
    def net_fils(self) -> int:
        return self.captured_fils - self.refunded_fils


def _between(column: Any, start: datetime, end: datetime) -> Any:
    return (column >= start) & (column < end)


async def daily_sales(first: date, last: date) -> list[DaySales]:
    """Captured minus refunded fils for each Kuwait day first..last (every day present, oldest first)."""
    start, end = day_span(first, last)
    captures = await PaymentAttempt.select(PaymentAttempt.finalized_at, PaymentAttempt.captured_fils).where(
        (PaymentAttempt.captured_fils > 0) & _between(PaymentAttempt.finalized_at, start, end))
    refunds = await Refund.select(Refund.updated_at, Refund.amount_fils).where(
        (Refund.status == "succeeded") & _between(Refund.updated_at, start, end))
    captured: dict[date, int] = {}
    refunded: dict[date, int] = {}
    for row in captures:
        day = business_day(row["finalized_at"])
        captured[day] = captured.get(day, 0) + row["captured_fils"]
    for row in refunds:
        day = business_day(row["updated_at"])
        refunded[day] = refunded.get(day, 0) + row["amount_fils"]
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [DaySales(d, captured.get(d, 0), refunded.get(d, 0)) for d in days]


async def orders_by_state() -> list[tuple[str, int]]:
    """Every order state (in the state machine's order) with how many orders are in it now."""
    rows = await Order.select(Order.status, Count(alias="n")).group_by(Order.status)
    counts = {row["status"]: row["n"] for row in rows}
    known = [(s.value, counts.pop(s.value, 0)) for s in OrderStatus]
    return known + sorted(counts.items())


@dataclass(frozen=True, slots=True)
class FailureRate:
    failed: int
    finished: int

    @property
    def percent(self) -> str:
        """One decimal, computed in integers: '12.5'. Empty when nothing finished."""
        if not self.finished:
            return ""
        tenths = (self.failed * 1000 + self.finished // 2) // self.finished
        return f"{tenths // 10}.{tenths % 10}"


async def payment_failure_rate(first: date, last: date) -> FailureRate:
    """Failed attempts / finished attempts (captured or failed, by when they finished)."""
    start, end = day_span(first, last)
    finished = [s.value for s in FAILED_PAYMENT | CAPTURED_PAYMENT]
    rows = await PaymentAttempt.select(PaymentAttempt.status, Count(alias="n")).where(
        PaymentAttempt.status.is_in(finished) & _between(PaymentAttempt.finalized_at, start, end)
    ).group_by(PaymentAttempt.status)
    failed = sum(r["n"] for r in rows if r["status"] in {s.value for s in FAILED_PAYMENT})
    return FailureRate(failed=failed, finished=sum(r["n"] for r in rows))


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    negative: bool
    sales: DaySales


@dataclass(frozen=True, slots=True)
class Chart:
    """Geometry of the daily sales bar chart, computed here so the template only draws."""

    width: int
    height: int
    baseline: float
    bars: list[Bar]
    top_fils: int
    bottom_fils: int
    first_x: float  # where the first and last day's labels go (mirrored in RTL)
    last_x: float
    first_anchor: str
    last_anchor: str


CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BOTTOM = 720, 240, 12, 28


def sales_chart(days: Sequence[DaySales], rtl: bool = False) -> Chart:
    """Bars of each day's net sales; refunds beyond captures go below the baseline.

    In right-to-left pages time runs from right to left, as the rest of the page reads."""
    top = max([0, *(d.net_fils for d in days)])
    bottom = min([0, *(d.net_fils for d in days)])
    span = (top - bottom) or 1
    plot = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    baseline = CHART_TOP + plot * top / span
    slot = CHART_WIDTH / max(len(days), 1)
    bars = []
    for n, day in enumerate(days):
        height = plot * abs(day.net_fils) / span
        x = (CHART_WIDTH - (n + 1) * slot if rtl else n * slot) + slot * 0.15
        y = baseline - height if day.net_fils >= 0 else baseline
        bars.append(Bar(round(x, 2), round(y, 2), round(slot * 0.7, 2), round(height, 2), day.net_fils < 0, day))
    return Chart(CHART_WIDTH, CHART_HEIGHT, round(baseline, 2), bars, top, bottom,
                 first_x=CHART_WIDTH if rtl else 0, last_x=0 if rtl else CHART_WIDTH,
                 first_anchor="end" if rtl else "start", last_anchor="start" if rtl else "end")


@dataclass(frozen=True, slots=True)
class Dashboard:
    today: DaySales
    days: list[DaySales]
    period_captured_fils: int
    period_refunded_fils: int
    orders_by_state: list[tuple[str, int]]
    failure_rate: FailureRate
    chart: Chart

    @property
    def period_net_fils(self) -> int:
        return self.period_captured_fils - self.period_refunded_fils

    @property
    def first_day(self) -> date:
        return self.days[0].day

    @property
    def last_day(self) -> date:
        return self.days[-1].day


async def dashboard(rtl: bool = False, now: datetime | None = None) -> Dashboard:
    """Today's and the last 30 days' sales, orders by state, failure rate and the chart."""
    last = today(now)
    first = last - timedelta(days=DASHBOARD_DAYS - 1)
    days = await daily_sales(first, last)
    return Dashboard(
        today=days[-1],
        days=days,
        period_captured_fils=sum(d.captured_fils for d in days),
        period_refunded_fils=sum(d.refunded_fils for d in days),
        orders_by_state=await orders_by_state(),
        failure_rate=await payment_failure_rate(first, last),
        chart=sales_chart(days, rtl),
    )


def order_status_label(status: str) -> str:
    labels = {
        "pending_payment": _("Awaiting payment"), "paid": _("Paid"), "fulfilled": _("Fulfilled"),
        "payment_failed": _("Payment failed"), "cancelled": _("Cancelled"), "expired": _("Expired"),
        "partially_refunded": _("Partially refunded"), "refunded": _("Refunded"),
    }
    return labels.get(status, status)


# ---------------------------------------------------------------- CSV


def safe_cell(value: object) -> str:
    """A text cell a spreadsheet will not run: formula-looking text gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_lines(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _place_names(order: dict[str, Any]) -> tuple[str, str]:
    governorate = GOVERNORATES_BY_SLUG.get(order["governorate"])
    area = AREAS_BY_SLUG.get(order["area"])
    return (localized(governorate, "name") if governorate else order["governorate"],
            localized(area[1], "name") if area else order["area"])


def order_headers() -> list[str]:
    return [
        _("Reference"), _("Created (Kuwait time)"), _("Status"), _("Customer name"), _("Email"), _("Phone"),
        _("Governorate"), _("Area"), _("Total (KWD)"), _("Provider"), _("Payment status"), _("KNET payment ID"),
        _("Track ID"), _("Captured (KWD)"), _("Refunded (KWD)"),
    ]


ORDER_EXPORT_COLUMNS = (
    Order.id, Order.reference, Order.created_at, Order.status, Order.customer_name, Order.email, Order.phone,
    Order.governorate, Order.area, Order.total_fils, Order.provider,
)


def order_row(order: dict[str, Any], attempts: Sequence[dict[str, Any]]) -> list[str]:
    """One CSV row: the latest attempt's status and KNET ids; money summed over all attempts."""
    latest = max(attempts, key=lambda a: a["number"]) if attempts else {}
    governorate, area = _place_names(order)
    return [
        safe_cell(order["reference"]), kuwait_time_text(order["created_at"]), order["status"],
        safe_cell(order["customer_name"]), safe_cell(order["email"]), safe_cell(order["phone"]),
        safe_cell(governorate), safe_cell(area), fils_to_str(order["total_fils"]),
        safe_cell(latest.get("provider", order["provider"])), latest.get("status", ""),
        safe_cell(latest.get("knet_payment_id", "")), safe_cell(latest.get("knet_track_id", "")),
        fils_to_str(sum(a["captured_fils"] for a in attempts)), fils_to_str(sum(a["refunded_fils"] for a in attempts)),
    ]


def orders_csv(first: date, last: date) -> AsyncIterator[bytes]:
    """The orders created on Kuwait days first..last, streamed in batches (memory stays flat).

    The header is rendered now, in the caller's language; rows follow as they are read."""
    header = (BOM + csv_lines([order_headers()])).encode("utf-8")
    start, end = day_span(first, last)
    return _order_chunks(header, start, end)


async def _order_chunks(header: bytes, start: datetime, end: datetime) -> AsyncIterator[bytes]:
    yield header
    after_id = 0
    while True:
        orders = await Order.select(*ORDER_EXPORT_COLUMNS).where(
            _between(Order.created_at, start, end) & (Order.id > after_id)
        ).order_by(Order.id).limit(EXPORT_BATCH)
        if not orders:
            return
        attempts = await PaymentAttempt.select(
            PaymentAttempt.order, PaymentAttempt.number, PaymentAttempt.provider, PaymentAttempt.status,
            PaymentAttempt.knet_payment_id, PaymentAttempt.knet_track_id, PaymentAttempt.captured_fils,
            PaymentAttempt.refunded_fils,
        ).where(PaymentAttempt.order.is_in([o["id"] for o in orders]))
        by_order: dict[int, list[dict[str, Any]]] = {}
        for attempt in attempts:
            by_order.setdefault(attempt["order"], []).append(attempt)
        yield csv_lines(order_row(o, by_order.get(o["id"], [])) for o in orders).encode("utf-8")
        if len(orders) < EXPORT_BATCH:
            return
        after_id = orders[-1]["id"]


def reconciliation_headers() -> list[str]:
    return [
        _("Provider"), _("KNET post date"), _("KNET payment ID"), _("Track ID"), _("Transaction ID"),
        _("Bank reference"), _("Merchant reference"), _("Order reference"), _("Provider payment ID"),
        _("Captured at (Kuwait time)"), _("Amount captured this day (KWD)"), _("Refunds this day (KWD)"),
        _("Net (KWD)"),
    ]


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    attempt: dict[str, Any]
    captured_fils: int  # captured on this day (0 when only a refund happened on it)
    refunded_fils: int  # refunds that succeeded on this day

    @property
    def net_fils(self) -> int:
        return self.captured_fils - self.refunded_fils

    def cells(self) -> list[str]:
        a = self.attempt
        return [
            safe_cell(a["provider"]), safe_cell(a["knet_post_date"]), safe_cell(a["knet_payment_id"]),
            safe_cell(a["knet_track_id"]), safe_cell(a["knet_transaction_id"]), safe_cell(a["knet_bank_reference"]),
            safe_cell(a["merchant_reference"]), safe_cell(a["order_reference"]),
            safe_cell(a["provider_payment_id"] or ""), kuwait_time_text(a["finalized_at"]),
            fils_to_str(self.captured_fils), fils_to_str(self.refunded_fils), fils_to_str(self.net_fils),
        ]


async def reconciliation(day: date) -> list[ReconciliationRow]:
    """One row per attempt captured on `day` or with a refund that succeeded on `day`.

    Raises ReportError when the day holds more than MAX_RECONCILIATION_ROWS attempts."""
    start, end = day_span(day, day)
    captured = await PaymentAttempt.select(PaymentAttempt.id, PaymentAttempt.captured_fils).where(
        (PaymentAttempt.captured_fils > 0) & _between(PaymentAttempt.finalized_at, start, end))
    refunds = await Refund.select(Refund.attempt, Refund.amount_fils).where(
        (Refund.status == "succeeded") & _between(Refund.updated_at, start, end))
    captured_by = {row["id"]: row["captured_fils"] for row in captured}
    refunded_by: dict[int, int] = {}
    for row in refunds:
        refunded_by[row["attempt"]] = refunded_by.get(row["attempt"], 0) + row["amount_fils"]
    ids = sorted(set(captured_by) | set(refunded_by))
    if len(ids) > MAX_RECONCILIATION_ROWS:
        raise ReportError(_("This day has more than %(count)s payments: too many for one file.",
                            count=MAX_RECONCILIATION_ROWS))
    rows: list[ReconciliationRow] = []
    for batch_start in range(0, len(ids), EXPORT_BATCH):
        batch = ids[batch_start:batch_start + EXPORT_BATCH]
        attempts = await PaymentAttempt.select(
            PaymentAttempt.id, PaymentAttempt.provider, PaymentAttempt.knet_post_date,
            PaymentAttempt.knet_payment_id, PaymentAttempt.knet_track_id, PaymentAttempt.knet_transaction_id,
            PaymentAttempt.knet_bank_reference, PaymentAttempt.merchant_reference,
            PaymentAttempt.provider_payment_id, PaymentAttempt.finalized_at,
            PaymentAttempt.order.reference.as_alias("order_reference"),
        ).where(PaymentAttempt.id.is_in(batch))
        rows.extend(ReconciliationRow(a, captured_by.get(a["id"], 0), refunded_by.get(a["id"], 0)) for a in attempts)
    rows.sort(key=lambda r: (r.attempt["provider"], r.attempt["finalized_at"] or start, r.attempt["id"]))
    return rows


def reconciliation_csv(rows: Sequence[ReconciliationRow]) -> bytes:
    return (BOM + csv_lines([reconciliation_headers(), *(r.cells() for r in rows)])).encode("utf-8")


# ---------------------------------------------------------------- listings (audit log, outbox)


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    page: int
    has_next: bool
    extra: dict[str, Any] = field(default_factory=dict)


def parse_page(text: str | None) -> int:
    """A page number from the query string. Raises ReportError."""
    text = (text or "1").strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise ReportError(_("The page number is not valid."))
    return int(text)


def _json_value(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _shown(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def audit_changes(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """(field, before, after) for each field of an audit row's before/after JSON, for reading."""
    before, after = _json_value(before) or {}, _json_value(after) or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return [("", _shown(before), _shown(after))]
    keys = sorted(set(before) | set(after))
    return [(key, _shown(before.get(key)), _shown(after.get(key))) for key in keys]


async def audit_actions() -> list[str]:
    rows = await AuditLog.select(AuditLog.action).distinct().order_by(AuditLog.action)
    return [row["action"] for row in rows]


async def audit_page(action: str = "", staff_email: str = "", page: int = 1,
                     per_page: int = AUDIT_PAGE_SIZE) -> Page:
    """Newest first; `action` exact, `staff_email` a part of the (lower-case) address."""
    query = AuditLog.select(
        AuditLog.id, AuditLog.staff_email, AuditLog.action, AuditLog.target_type, AuditLog.target_id,
        AuditLog.before, AuditLog.after, AuditLog.reason, AuditLog.created_at,
    )
    if action:
        query = query.where(AuditLog.action == action[:60])
    needle = staff_email.strip().lower().replace("%", "")[:254]
    if needle:
        query = query.where(AuditLog.staff_email.like(f"%{needle}%"))
    rows = await query.order_by(AuditLog.id, ascending=False).limit(per_page + 1).offset((page - 1) * per_page)
    shown = [{**row, "changes": audit_changes(row["before"], row["after"]),
              "when": kuwait_time_text(row["created_at"])} for row in rows[:per_page]]
    return Page(shown, page, len(rows) > per_page)


def check_outbox_status(status: str) -> str:
    if status and status not in OUTBOX_STATUSES:
        raise ReportError(_("Unknown email status."))
    return status


async def outbox_page(status: str = "", page: int = 1, per_page: int = OUTBOX_PAGE_SIZE) -> Page:
    """Outbox emails newest first (bodies left out), optionally of one status. Raises ReportError."""
    check_outbox_status(status)
    query = OutboxEmail.select(
        OutboxEmail.id, OutboxEmail.order, OutboxEmail.order.reference.as_alias("order_reference"),
        OutboxEmail.kind, OutboxEmail.to_address, OutboxEmail.subject, OutboxEmail.status, OutboxEmail.attempts,
        OutboxEmail.last_error, OutboxEmail.created_at, OutboxEmail.sent_at,
    )
    if status:
        query = query.where(OutboxEmail.status == status)
    rows = await query.order_by(OutboxEmail.id, ascending=False).limit(per_page + 1).offset((page - 1) * per_page)
    counts = await OutboxEmail.select(OutboxEmail.status, Count(alias="n")).group_by(OutboxEmail.status)
    return Page([outbox_row(r) for r in rows[:per_page]], page, len(rows) > per_page,
                extra={"counts": {r["status"]: r["n"] for r in counts}})


def outbox_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created": kuwait_time_text(row["created_at"]), "sent": kuwait_time_text(row["sent_at"])}


async def outbox_email(email_id: int) -> dict[str, Any] | None:
    row = await OutboxEmail.select(
        OutboxEmail.id, OutboxEmail.order, OutboxEmail.order.reference.as_alias("order_reference"),
        OutboxEmail.kind, OutboxEmail.to_address, OutboxEmail.subject, OutboxEmail.status, OutboxEmail.attempts,
        OutboxEmail.last_error, OutboxEmail.created_at, OutboxEmail.sent_at,
    ).where(OutboxEmail.id == email_id).first()
    return outbox_row(row) if row else None

