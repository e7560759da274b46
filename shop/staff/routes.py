"""Every staff controller, mounted together behind `staff_guard` (each declares its roles)."""
from shop.staff.controllers import StaffAuthController
from shop.staff.catalogue import CatalogueController
from shop.staff.providers import ProvidersController
from shop.staff.reports_controllers import AuditController, ReportsController
from shop.staff.emails import EmailsController
from shop.staff.accounts import AccountsController
from shop.staff.orders import StaffOrdersController
from shop.staff.vendors import VendorsController

STAFF_HANDLERS: list[object] = [
    StaffAuthController,
    CatalogueController,
    ProvidersController,
    ReportsController,
    AuditController,
    EmailsController,
    AccountsController,
    StaffOrdersController,
    VendorsController,
]
