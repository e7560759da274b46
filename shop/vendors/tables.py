"""The vendor table. Commission is integer basis points (1/100 of a percent) of the vendor's lines."""
from piccolo.columns import Boolean, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class Vendor(Table):
    name = Varchar(length=120, unique=True)
    iban = Varchar(length=30)
    commission_bps = Integer(default=0)
    # Inactive vendors are off the product form's picker; products already theirs stay theirs.
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
