"""Staff vendor pages: who sells through the shop, where UPayments pays them, our commission.

Owners only: a vendor's IBAN decides where customers' money goes. Operations assign vendors
to products on the product form, from the active ones."""
from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from shop.web.pages import RowId
from litestar.response import Template

from shop.i18n import gettext as _
from shop.staff.guards import current_staff, roles
from shop.staff.pages import created_response, saved_or_none, staff_template
from shop.vendors import services as vendors
from shop.vendors.services import commission_text

OWNERS = roles()


async def _vendor_or_404(vendor_id: int) -> dict[str, Any]:
    try:
        return await vendors.get_vendor(vendor_id)
    except vendors.VendorNotFound:
        raise NotFoundException("unknown vendor") from None


class VendorsController(Controller):
    path = "/staff/vendors"

    @get("/", name="staff-vendors", opt=OWNERS)
    async def list_vendors(self, request: Request) -> Template:
        return staff_template(request, "staff/vendors/vendors.html", vendors=await vendors.all_vendors(),
                              commission_text=commission_text)

    @get("/new", name="staff-vendor-new", opt=OWNERS)
    async def new_vendor(self, request: Request) -> Template:
        return self._page(request, None, {"active": True, "commission": "0"}, {})

    @post("/", name="staff-vendor-create", opt=OWNERS, status_code=303)
    async def create_vendor(self, request: Request) -> Response:
        data, errors, values = vendors.validate_vendor(await request.form())
        if data is None:
            return self._page(request, None, values, errors, status_code=422)
        try:
            await vendors.create_vendor(current_staff(request), data)
        except vendors.VendorError as exc:
            return self._page(request, None, values, exc.errors, status_code=422)
        return created_response(request, "/staff/vendors", _("Vendor created."))

    @get("/{vendor_id:int}", name="staff-vendor", opt=OWNERS)
    async def vendor(self, request: Request, vendor_id: RowId) -> Template:
        vendor = await _vendor_or_404(vendor_id)
        return self._page(request, vendor, vendors.vendor_form_values(vendor), {})

    @post("/{vendor_id:int}", name="staff-vendor-update", opt=OWNERS, status_code=200)
    async def update_vendor(self, request: Request, vendor_id: RowId) -> Response:
        vendor = await _vendor_or_404(vendor_id)
        data, errors, values = vendors.validate_vendor(await request.form())
        if data is not None:
            try:
                vendor = await vendors.update_vendor(current_staff(request), vendor_id, data)
            except vendors.VendorError as exc:
                errors = exc.errors
            except vendors.VendorNotFound:
                raise NotFoundException("unknown vendor") from None
        if errors:
            return self._page(request, vendor, values, errors, status_code=422)
        return saved_or_none(request, f"/staff/vendors/{vendor_id}", _("Vendor saved.")) or self._page(
            request, vendor, vendors.vendor_form_values(vendor), {}, message=_("Vendor saved."))

    def _page(self, request: Request, vendor: dict[str, Any] | None, values: dict[str, Any], errors: dict[str, str],
              status_code: int = 200, message: str = "") -> Template:
        return staff_template(request, "staff/vendors/vendor.html", "staff/vendors/_vendor_form.html",
                              status_code=status_code, vendor=vendor, values=values, errors=errors, message=message)
