"""The single Piccolo app: every table of the shop, migrations in the top-level folder."""
from piccolo.conf.apps import AppConfig

from shop.cart.tables import Cart, CartLine
from shop.catalog.tables import Category, Product
from shop.notifications.tables import OutboxEmail
from shop.orders.tables import Order, OrderLine
from shop.paths import MIGRATIONS_DIR
from shop.payments.tables import Lease, PaymentAttempt, PaymentEvent, Refund, ShopSetting
from shop.sandbox.tables import SandboxRecord
from shop.staff.tables import AuditLog, LoginThrottle, StaffSession, StaffUser
from shop.vendors.tables import Vendor

TABLES = [
    Vendor, Category, Product, Cart, CartLine, Order, OrderLine, PaymentAttempt, PaymentEvent, Refund,
    Lease, OutboxEmail, SandboxRecord, ShopSetting, StaffUser, StaffSession, LoginThrottle, AuditLog,
]

APP_CONFIG = AppConfig(
    app_name="shop",
    migrations_folder_path=str(MIGRATIONS_DIR),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
