"""Catalogue tables. Money is integer fils; stock is what is on hand, part of it reserved."""
from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from shop.vendors.tables import Vendor


class Category(Table):
    slug = Varchar(length=80, unique=True)
    name_en = Varchar(length=120)
    name_ar = Varchar(length=120)
    position = Integer(default=0)
    active = Boolean(default=True)


class Product(Table):
    slug = Varchar(length=120, unique=True)
    category = ForeignKey(references=Category, index=True)
    name_en = Varchar(length=200)
    name_ar = Varchar(length=200)
    description_en = Text(default="")
    description_ar = Text(default="")
    price_fils = BigInt()
    # On hand; `reserved` of it is held by orders awaiting payment. Sellable = stock - reserved.
    stock = Integer(default=0)
    reserved = Integer(default=0)
    image = Varchar(length=200, default="")
    active = Boolean(default=True, index=True)
    featured = Boolean(default=False)
    # Sold on a vendor's behalf (UPayments pays its share to the vendor's IBAN); None: our own stock.
    vendor = ForeignKey(references=Vendor, on_delete=OnDelete.set_null, null=True, default=None)
    # Normalised English + Arabic names for search (see catalog.search.normalise).
    search_text = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
