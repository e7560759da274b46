"""Every staff controller, mounted together behind `staff_guard` (each declares its roles)."""
from shop.staff.controllers import StaffAuthController

STAFF_HANDLERS: list[object] = [
    StaffAuthController,
]
