"""Order tables. Lines keep name and price snapshots so later catalogue edits never rewrite history."""
from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from shop.catalog.tables import Product


class Order(Table, tablename="shop_order"):  # "order" is an SQL keyword
    public_token = Varchar(length=64, unique=True)
    reference = Varchar(length=32, unique=True)
    # One order per cart: a second Pay press (or a second tab) finds this row instead.
    cart_token = Varchar(length=64, unique=True, null=True, default=None)
    status = Varchar(length=24, default="pending_payment", index=True)
    # reserved -> sold (paid) | released (failed/expired/cancelled); "short" when paid without stock.
    stock_state = Varchar(length=12, default="reserved")
    customer_name = Varchar(length=100)
    email = Varchar(length=254)
    phone = Varchar(length=16)
    governorate = Varchar(length=40)
    area = Varchar(length=60)
    block = Varchar(length=10)
    street = Varchar(length=100)
    avenue = Varchar(length=50, default="")
    building = Varchar(length=20)
    floor = Varchar(length=10, default="")
    apartment = Varchar(length=20, default="")
    notes = Text(default="")
    language = Varchar(length=2, default="en")
    provider = Varchar(length=20)
    total_fils = BigInt()
    currency = Varchar(length=3, default="KWD")
    needs_attention = Boolean(default=False, index=True)
    attention_reason = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    paid_at = Timestamptz(null=True, default=None)


class OrderLine(Table):
    order = ForeignKey(references=Order, on_delete=OnDelete.cascade, index=True)
    product = ForeignKey(references=Product, on_delete=OnDelete.set_null, null=True)
    name_en = Varchar(length=200)
    name_ar = Varchar(length=200)
    unit_price_fils = BigInt()
    quantity = Integer()
    line_total_fils = BigInt()
    # The vendor as it was when the order was placed: a later edit never changes a placed order's split.
    vendor_id = Integer(null=True, default=None)
    vendor_name = Varchar(length=120, default="")
    vendor_iban = Varchar(length=30, default="")
    vendor_commission_bps = Integer(default=0)
