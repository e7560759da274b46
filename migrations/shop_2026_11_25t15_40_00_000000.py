from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-25T15:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one cart line per product in a cart"


class RawSQL(Table, tablename="cart_line"):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="shop", description=DESCRIPTION)

    async def add_unique_index():
        # Piccolo has no composite unique constraint; concurrent adds rely on this index.
        await RawSQL.raw("CREATE UNIQUE INDEX cart_line_cart_product ON cart_line (cart, product)")

    async def drop_unique_index():
        await RawSQL.raw("DROP INDEX cart_line_cart_product")

    manager.add_raw(add_unique_index)
    manager.add_raw_backwards(drop_unique_index)
    return manager
