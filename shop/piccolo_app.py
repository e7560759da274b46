"""The single Piccolo app: every table of the shop, migrations in the top-level folder."""
from piccolo.conf.apps import AppConfig

from shop.paths import MIGRATIONS_DIR
from shop.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="shop",
    migrations_folder_path=str(MIGRATIONS_DIR),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
