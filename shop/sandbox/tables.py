"""Sandbox storage: one generic JSON record table, shared by every provider's fake server.

Kept in the shop's database so the sandboxes work with several app processes."""
from piccolo.columns import JSON, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class SandboxRecord(Table):
    provider = Varchar(length=20, index=True)
    kind = Varchar(length=30)  # payment | refund | event | setup | control | idempotency ...
    key = Varchar(length=160, unique=True)  # e.g. "checkout:payment:pay_abc"
    data = JSON(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
