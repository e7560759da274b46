"""Payment tables: attempts, their append-only event timeline, and refunds."""
from piccolo.columns import JSON, BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from shop.orders.tables import Order


class PaymentAttempt(Table):
    order = ForeignKey(references=Order, on_delete=OnDelete.cascade, index=True)
    number = Integer(default=1)  # 1 for the first attempt of an order, 2 after a retry...
    provider = Varchar(length=20)
    status = Varchar(length=24, default="initiated", index=True)
    amount_fils = BigInt()
    currency = Varchar(length=3, default="KWD")
    # Sent to the provider: unique per attempt, so a retry is a new payment over there too.
    merchant_reference = Varchar(length=64, unique=True)
    idempotency_key = Varchar(length=64, unique=True)
    provider_payment_id = Varchar(length=120, null=True, default=None, unique=True)
    # Where the browser goes to pay; kept so a second Pay press resumes the same payment.
    redirect_url = Text(default="")
    redirect_form = JSON(default="{}")
    expires_at = Timestamptz(null=True, default=None)
    next_check_at = Timestamptz(null=True, default=None, index=True)
    checks = Integer(default=0)
    failure_reason = Text(default="")
    captured_fils = BigInt(default=0)
    refunded_fils = BigInt(default=0)
    # KNET receipt fields, as the provider reports them.
    knet_payment_id = Varchar(length=40, default="")
    knet_transaction_id = Varchar(length=40, default="")
    knet_auth_code = Varchar(length=20, default="")
    knet_bank_reference = Varchar(length=40, default="")
    knet_track_id = Varchar(length=64, default="")
    knet_result = Varchar(length=40, default="")
    knet_post_date = Varchar(length=8, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    finalized_at = Timestamptz(null=True, default=None)


class PaymentEvent(Table):
    """Everything exchanged with a provider. Rows are only ever inserted."""

    attempt = ForeignKey(references=PaymentAttempt, on_delete=OnDelete.cascade, null=True, index=True)
    provider = Varchar(length=20)
    kind = Varchar(length=20)  # request | response | return | webhook | inquiry | refund | note
    # (provider, provider_event_id) is unique: raw index in the migration (webhook dedupe).
    provider_event_id = Varchar(length=120, null=True, default=None)
    event_type = Varchar(length=60, default="")
    signature_ok = Boolean(null=True, default=None)
    status_before = Varchar(length=24, default="")
    status_after = Varchar(length=24, default="")
    payload = JSON(default="{}")  # secrets and card data removed before storing
    note = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())


class Refund(Table):
    attempt = ForeignKey(references=PaymentAttempt, on_delete=OnDelete.cascade, index=True)
    amount_fils = BigInt()
    status = Varchar(length=20, default="requested")  # requested | pending | succeeded | failed
    provider_refund_id = Varchar(length=120, null=True, default=None)
    idempotency_key = Varchar(length=64, unique=True)
    requested_by = Varchar(length=254, default="")
    reason = Text(default="")
    failure_reason = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Lease(Table):
    """A named lease decides which process leads a job (the reconciler) across processes."""

    name = Varchar(length=40, unique=True)
    holder = Varchar(length=80, default="")
    expires_at = Timestamptz(default=TimestamptzNow())


class ShopSetting(Table):
    """Settings staff change at run time (the active payment provider). Environment = defaults."""

    key = Varchar(length=60, unique=True)
    value = Text(default="")
    updated_by = Varchar(length=254, default="")
    updated_at = Timestamptz(default=TimestamptzNow())
