"""Every table of the shop, in creation order. Kept apart from `piccolo_app`, whose AppConfig
pulls in Piccolo's migration tooling (and the black formatter): 18 MiB a worker never needs."""
from shop.cart.tables import Cart, CartLine
from shop.catalog.tables import Category, Product
from shop.notifications.tables import OutboxEmail
from shop.orders.tables import Order, OrderLine
from shop.payments.tables import Lease, PaymentAttempt, PaymentEvent, Refund, ShopSetting
from shop.sandbox.tables import SandboxRecord
from shop.staff.tables import AuditLog, LoginThrottle, StaffSession, StaffUser
from shop.vendors.tables import Vendor

TABLES = [
    Vendor, Category, Product, Cart, CartLine, Order, OrderLine, PaymentAttempt, PaymentEvent, Refund,
    Lease, OutboxEmail, SandboxRecord, ShopSetting, StaffUser, StaffSession, LoginThrottle, AuditLog,
]
