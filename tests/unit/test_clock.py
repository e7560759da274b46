"""People read times in Kuwait time (+03:00 all year): customers, staff and the receipt email."""
from datetime import datetime, timezone

from shop.clock import business_day, kuwait_time_text
from shop.notifications.outbox import render_receipt

LATE_EVENING_UTC = datetime(2026, 3, 31, 22, 15, 30, tzinfo=timezone.utc)


def test_an_instant_late_in_the_utc_evening_is_the_next_kuwait_day() -> None:
    assert kuwait_time_text(LATE_EVENING_UTC) == "2026-04-01 01:15:30"
    assert kuwait_time_text(LATE_EVENING_UTC, seconds=False) == "2026-04-01 01:15"
    assert str(business_day(LATE_EVENING_UTC)) == "2026-04-01"
    assert kuwait_time_text(None) == ""


def test_the_receipt_email_gives_the_payment_time_in_kuwait_time() -> None:
    order = {"reference": "DM-1", "language": "en", "public_token": "t", "customer_name": "Noura",
             "total_fils": 12_500, "subtotal_fils": 12_500, "shipping_fils": 0}
    attempt = {"finalized_at": LATE_EVENING_UTC, "payment_id": "1", "transaction_id": "2", "auth_code": "3",
               "bank_reference": "4", "track_id": "5", "result": "CAPTURED", "amount_fils": 12_500}
    _, body = render_receipt(order, [], attempt)
    assert "2026-04-01 01:15:30 (+03:00)" in body
    assert "UTC" not in body
