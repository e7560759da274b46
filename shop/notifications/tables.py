"""The outbox: emails are written with the transition that causes them, and sent afterwards."""
from piccolo.columns import ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from shop.orders.tables import Order


class OutboxEmail(Table):
    # (order, kind) is unique: raw index in the migration, so a receipt is queued once.
    order = ForeignKey(references=Order, on_delete=OnDelete.cascade, null=True, index=True)
    kind = Varchar(length=30)  # receipt | ...
    to_address = Varchar(length=254)
    subject = Varchar(length=200)
    body_text = Text()
    status = Varchar(length=12, default="pending", index=True)  # pending | sent | kept | failed
    attempts = Integer(default=0)
    last_error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)
