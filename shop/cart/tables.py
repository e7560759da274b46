"""Cart tables: one cart per browser session token, one line per product."""
from piccolo.columns import ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from shop.catalog.tables import Product


class Cart(Table):
    token = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class CartLine(Table):
    # (cart, product) is unique: a raw index in the migration, as Piccolo has no composite unique.
    cart = ForeignKey(references=Cart, on_delete=OnDelete.cascade, index=True)
    product = ForeignKey(references=Product, on_delete=OnDelete.cascade)
    quantity = Integer(default=1)
