from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-25T15:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique webhook events per provider, one email of a kind per order"


class RawSQL(Table, tablename="payment_event"):
    pass


INDEXES = {
    # Webhook dedupe: the provider's event id is seen once (NULL ids never collide).
    "payment_event_provider_event": "payment_event (provider, provider_event_id)",
    # A receipt is queued once per order, however many times a capture is reported.
    "outbox_email_order_kind": "outbox_email (\"order\", kind)",
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="shop", description=DESCRIPTION)

    async def add_indexes():
        for name, target in INDEXES.items():
            await RawSQL.raw(f"CREATE UNIQUE INDEX {name} ON {target}")

    async def drop_indexes():
        for name in INDEXES:
            await RawSQL.raw(f"DROP INDEX {name}")

    manager.add_raw(add_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
