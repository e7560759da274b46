"""Reports without HTTP: Kuwait business days, sales, failure rate, the chart, and both CSV files."""
from __future__ import annotations

import csv
import io
import secrets
from datetime import date, datetime, timedelta, timezone

import pytest

from shop.orders.tables import Order
from shop.payments.providers.base import KnetReceipt, Observation
from shop.payments.service import apply_observation
from shop.payments.states import PaymentStatus as P
from shop.payments.tables import PaymentAttempt, Refund
from shop.staff import reports
from shop.staff.reports import DaySales, ReportError
from tests.integration.conftest import make_attempt, make_order, make_product

UTC = timezone.utc


def kuwait(day: date, hour: int, minute: int = 0) -> datetime:
    """A Kuwait wall-clock time as a UTC instant."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=reports.KUWAIT_TIME).astimezone(UTC)


async def captured(at: datetime, price_fils: int = 2500, **receipt: str) -> tuple[dict, dict]:
    """A paid order whose capture happened at `at` (and which was created then)."""
    order = await make_order([(await make_product(price_fils=price_fils), 1)])
    attempt = await make_attempt(order)
    fields = {"payment_id": secrets.token_hex(6), "track_id": order["reference"], "post_date": at.strftime("%m%d"),
              **receipt}
    await apply_observation(attempt["id"], Observation(status=P.CAPTURED, amount_fils=order["total_fils"],
                                                       currency="KWD", receipt=KnetReceipt(**fields)), "webhook")
    await PaymentAttempt.update({PaymentAttempt.finalized_at: at}).where(PaymentAttempt.id == attempt["id"])
    await Order.update({Order.created_at: at}).where(Order.id == order["id"])
    return order, await PaymentAttempt.select().where(PaymentAttempt.id == attempt["id"]).first()


async def refunded(attempt: dict, amount_fils: int, at: datetime) -> None:
    """A refund that succeeded at `at`, applied through the payment service."""
    refund_id = "rf_" + secrets.token_hex(6)
    await Refund.insert(Refund(attempt=attempt["id"], amount_fils=amount_fils, status="pending",
                               provider_refund_id=refund_id, idempotency_key=secrets.token_hex(16)))
    await apply_observation(attempt["id"], Observation(status=None, refund_id=refund_id, refund_status="succeeded"),
                            "refund")
    await Refund.update({Refund.updated_at: at}).where(Refund.provider_refund_id == refund_id)


def parse(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(data.decode("utf-8").removeprefix("\ufeff"))))


async def collect(stream) -> bytes:
    return b"".join([chunk async for chunk in stream])


# ---------------------------------------------------------------- days and input


def test_the_business_day_is_kuwait_time() -> None:
    start, end = reports.day_span(date(2026, 1, 1), date(2026, 1, 1))
    assert start == datetime(2025, 12, 31, 21, 0, tzinfo=UTC) and end == datetime(2026, 1, 1, 21, 0, tzinfo=UTC)
    assert reports.business_day(datetime(2025, 12, 31, 21, 0, tzinfo=UTC)) == date(2026, 1, 1)
    assert reports.business_day(datetime(2025, 12, 31, 20, 59, 59, tzinfo=UTC)) == date(2025, 12, 31)
    # No daylight saving: the same offset in July.
    assert reports.day_span(date(2026, 7, 1), date(2026, 7, 1))[0] == datetime(2026, 6, 30, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(("start", "end"), [
    ("2026-13-01", "2026-12-31"), ("2026-02-30", None), ("01/02/2026", None), ("2026-1-1", None),
    ("", "yesterday"), ("2026-03-02", "2026-03-01"), ("2024-01-01", "2025-12-31"), ("1999-12-31", "2000-01-01"),
    ("２０２６-01-01", None),
])
def test_bad_export_ranges_are_refused(start: str, end: str | None) -> None:
    with pytest.raises(ReportError):
        reports.export_range(start, end or "2026-12-31")


def test_export_range_defaults_to_the_last_30_kuwait_days() -> None:
    # 22:30 UTC on 31 Jan is already 1 Feb in Kuwait.
    now = datetime(2026, 1, 31, 22, 30, tzinfo=UTC)
    assert reports.export_range(None, None, now) == (date(2026, 1, 3), date(2026, 2, 1))
    assert reports.export_range("2025-02-02", "2026-02-02") == (date(2025, 2, 2), date(2026, 2, 2))  # 366 days
    assert reports.reconciliation_day("", now) == date(2026, 2, 1)


def test_formula_cells_are_defused() -> None:
    for text in ["=1+2", "+965", "-2", "@SUM(A1)", "\tx"]:
        assert reports.safe_cell(text) == "'" + text
    assert reports.safe_cell("Fatima") == "Fatima" and reports.safe_cell(None) == ""


def test_failure_rate_is_computed_in_integers() -> None:
    assert reports.FailureRate(1, 8).percent == "12.5"
    assert reports.FailureRate(2, 3).percent == "66.7"
    assert reports.FailureRate(0, 0).percent == ""


def test_chart_bars_scale_mirror_in_rtl_and_go_below_the_line_for_net_refunds() -> None:
    days = [DaySales(date(2026, 1, 1), 0, 0), DaySales(date(2026, 1, 2), 3000, 0), DaySales(date(2026, 1, 3), 0, 1000)]
    chart = reports.sales_chart(days)
    first, tallest, negative = chart.bars
    assert first.height == 0 and tallest.y == reports.CHART_TOP and not tallest.negative
    assert negative.negative and negative.y == chart.baseline and tallest.height == pytest.approx(3 * negative.height)
    assert first.x < tallest.x < negative.x
    mirrored = reports.sales_chart(days, rtl=True)
    assert mirrored.bars[0].x > mirrored.bars[1].x > mirrored.bars[2].x
    assert mirrored.first_anchor == "end" and mirrored.first_x == reports.CHART_WIDTH
    assert reports.sales_chart([DaySales(date(2026, 1, 1))]).bars[0].height == 0  # nothing sold: no division by 0


# ---------------------------------------------------------------- figures from the database


async def test_sales_count_captures_and_refunds_on_their_own_kuwait_day() -> None:
    day = date(2011, 3, 14)
    before_midnight = kuwait(day, 23, 50)  # 20:50 UTC: still `day` in Kuwait
    _, early = await captured(kuwait(day, 0, 5), price_fils=10_000)
    await captured(before_midnight, price_fils=2_500)
    await captured(kuwait(day + timedelta(days=1), 0, 1), price_fils=7_000)  # 21:01 UTC on `day`
    await refunded(early, 4_000, kuwait(day + timedelta(days=1), 9))
    sales = await reports.daily_sales(day - timedelta(days=1), day + timedelta(days=1))
    assert [(s.day, s.captured_fils, s.refunded_fils) for s in sales] == [
        (day - timedelta(days=1), 0, 0), (day, 12_500, 0), (day + timedelta(days=1), 7_000, 4_000)]
    assert sales[2].net_fils == 3_000

    board = await reports.dashboard(now=kuwait(day + timedelta(days=1), 12))
    assert len(board.days) == reports.DASHBOARD_DAYS and board.last_day == day + timedelta(days=1)
    assert board.today.net_fils == 3_000 and board.period_net_fils == 15_500
    assert board.period_captured_fils == 19_500 and board.period_refunded_fils == 4_000
    assert dict(board.orders_by_state)["paid"] >= 2 and [s for s, _ in board.orders_by_state][0] == "pending_payment"


async def test_failure_rate_counts_finished_attempts_of_the_period() -> None:
    day = date(2012, 5, 20)
    for status in (P.DECLINED, P.CANCELLED, P.EXPIRED):
        order = await make_order([(await make_product(), 1)])
        attempt = await make_attempt(order)
        await apply_observation(attempt["id"], Observation(status=status), "webhook")
        await PaymentAttempt.update({PaymentAttempt.finalized_at: kuwait(day, 10)}).where(
            PaymentAttempt.id == attempt["id"])
    await captured(kuwait(day, 11))
    pending = await make_attempt(await make_order([(await make_product(), 1)]))  # not finished: not counted
    await PaymentAttempt.update({PaymentAttempt.created_at: kuwait(day, 12)}).where(PaymentAttempt.id == pending["id"])
    rate = await reports.payment_failure_rate(day, day)
    assert (rate.failed, rate.finished, rate.percent) == (3, 4, "75.0")


async def test_reconciliation_has_one_row_per_attempt_that_moved_money_that_day() -> None:
    day = date(2013, 8, 1)
    order, attempt = await captured(kuwait(day, 10), price_fils=12_500, transaction_id="T1", bank_reference="B1")
    _, old = await captured(kuwait(day - timedelta(days=3), 10), price_fils=5_000)
    await refunded(old, 1_500, kuwait(day, 15))
    await refunded(old, 500, kuwait(day, 16))
    await refunded(attempt, 2_500, kuwait(day + timedelta(days=1), 9))  # the next day's file
    failed = await make_attempt(await make_order([(await make_product(), 1)]))
    await apply_observation(failed["id"], Observation(status=P.DECLINED), "webhook")
    await PaymentAttempt.update({PaymentAttempt.finalized_at: kuwait(day, 11)}).where(PaymentAttempt.id == failed["id"])

    rows = await reports.reconciliation(day)
    by_attempt = {r.attempt["id"]: r for r in rows}
    assert set(by_attempt) == {attempt["id"], old["id"]}
    assert (by_attempt[attempt["id"]].captured_fils, by_attempt[attempt["id"]].refunded_fils) == (12_500, 0)
    assert (by_attempt[old["id"]].captured_fils, by_attempt[old["id"]].refunded_fils) == (0, 2_000)
    assert sum(r.net_fils for r in rows) == (await reports.daily_sales(day, day))[0].net_fils == 10_500

    table = parse(reports.reconciliation_csv(rows))
    header, lines = table[0], {line[7]: line for line in table[1:]}
    assert header[:3] == ["Provider", "KNET post date", "KNET payment ID"] and len(header) == 13
    line = lines[order["reference"]]
    assert line[0] == "checkout" and line[1] == kuwait(day, 10).strftime("%m%d") and line[2] == attempt["knet_payment_id"]
    assert line[3:7] == [order["reference"], "T1", "B1", attempt["merchant_reference"]]
    assert line[10:] == ["12.500", "0.000", "12.500"]
    assert [row[10:] for ref, row in lines.items() if ref != order["reference"]] == [["0.000", "2.000", "-2.000"]]
    assert parse(reports.reconciliation_csv(await reports.reconciliation(date(2001, 1, 1)))) == [header]


async def test_orders_csv_streams_every_order_of_the_range_with_its_payment() -> None:
    day = date(2014, 2, 10)
    order, attempt = await captured(kuwait(day, 0, 30), price_fils=3_250)
    await refunded(attempt, 250, kuwait(day, 2))
    unpaid = await make_order([(await make_product(), 2)])
    await Order.update({Order.created_at: kuwait(day, 23, 59), Order.customer_name: "=HYPERLINK(\"x\")",
                        Order.email: "@evil.example"}).where(Order.id == unpaid["id"])
    arabic = await make_order([(await make_product(), 1)])
    await Order.update({Order.created_at: kuwait(day + timedelta(days=1), 0, 0), Order.customer_name: "فاطمة الصباح"}
                       ).where(Order.id == arabic["id"])
    outside = await make_order([(await make_product(), 1)])
    await Order.update({Order.created_at: kuwait(day - timedelta(days=1), 23, 59)}).where(Order.id == outside["id"])

    table = parse(await collect(reports.orders_csv(day, day + timedelta(days=1))))
    header, rows = table[0], {row[0]: row for row in table[1:]}
    assert header == ["Reference", "Created (Kuwait time)", "Status", "Customer name", "Email", "Phone", "Governorate",
                      "Area", "Total (KWD)", "Provider", "Payment status", "KNET payment ID", "Track ID",
                      "Captured (KWD)", "Refunded (KWD)"]
    assert set(rows) == {order["reference"], unpaid["reference"], arabic["reference"]}
    paid = rows[order["reference"]]
    assert paid[1] == f"{day.isoformat()} 00:30:00" and paid[2] == "partially_refunded"
    assert paid[5] == "'+96555123456" and paid[6:8] == ["Hawalli", "Salmiya"] and paid[8] == "3.250"
    assert paid[9:] == ["checkout", "partially_refunded", attempt["knet_payment_id"], order["reference"], "3.250", "0.250"]
    assert rows[unpaid["reference"]][3:5] == ["'=HYPERLINK(\"x\")", "'@evil.example"]
    assert rows[unpaid["reference"]][10:] == ["", "", "", "0.000", "0.000"]  # no attempt yet
    assert rows[arabic["reference"]][3] == "فاطمة الصباح"


async def test_orders_csv_reads_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "EXPORT_BATCH", 2)
    day = date(2015, 6, 6)
    made = []
    for minute in range(5):
        order = await make_order([(await make_product(), 1)])
        await Order.update({Order.created_at: kuwait(day, 8, minute)}).where(Order.id == order["id"])
        made.append(order["reference"])
    chunks = [chunk async for chunk in reports.orders_csv(day, day)]
    assert len(chunks) == 1 + 3  # header, then 2 + 2 + 1 orders
    assert [row[0] for row in parse(b"".join(chunks))[1:]] == made
