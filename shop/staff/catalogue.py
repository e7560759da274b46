"""Staff catalogue pages: products and categories in both languages, stock, images (owner, operations)."""
from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter
from litestar.response import Template

from shop.catalog import admin
from shop.i18n import gettext as _
from shop.staff.auth import Role
from shop.staff.guards import current_staff, roles
from shop.staff.pages import created_response, saved_or_none, staff_template
from shop.web.errors import UserError
from shop.web.pages import RowId, app_settings

CATALOGUE = roles(Role.OPERATIONS)
# The image itself plus the form's other fields and multipart framing.
UPLOAD_BODY_LIMIT = admin.IMAGE_MAX_BYTES + 64 * 1024
STOCK_PANEL = "staff/catalogue/_stock.html"
IMAGE_PANEL = "staff/catalogue/_image.html"


def _page_number(raw: str) -> int:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 1


async def _product_or_404(product_id: int) -> dict[str, Any]:
    try:
        return await admin.get_product(product_id)
    except admin.NotFound:
        raise NotFoundException("unknown product") from None


async def _category_or_404(category_id: int) -> dict[str, Any]:
    try:
        return await admin.get_category(category_id)
    except admin.NotFound:
        raise NotFoundException("unknown category") from None


class CatalogueController(Controller):
    path = "/staff/catalogue"

    @get("/", name="staff-catalogue", opt=CATALOGUE)
    async def products(
        self,
        request: Request,
        q: Annotated[str, QueryParameter(name="q", max_length=200)] = "",
        category: Annotated[str, QueryParameter(name="category", max_length=80)] = "",
        status: Annotated[str, QueryParameter(name="status", max_length=10)] = "",
        page: Annotated[str, QueryParameter(name="page", max_length=10)] = "1",
    ) -> Template:
        categories = await admin.all_categories()
        chosen = next((c for c in categories if c["slug"] == category), None)
        if category and chosen is None:
            raise UserError(_("There is no category with that slug."))
        if status not in ("", "active", "inactive"):
            raise UserError(_("Choose active, inactive or all products."))
        result = await admin.list_products(q, chosen["id"] if chosen else None, status, _page_number(page))
        return staff_template(request, "staff/catalogue/products.html", "staff/catalogue/_products.html",
                              result=result, categories=categories, q=q, category_slug=category, status=status,
                              image_url=admin.image_url)

    @get("/products/new", name="staff-product-new", opt=CATALOGUE)
    async def new_product(self, request: Request) -> Template:
        values = {"active": True, "featured": False, "stock": "0", "price": "", "category": ""}
        return await self._product_page(request, None, values, {})

    @post("/products", name="staff-product-create", opt=CATALOGUE, status_code=303)
    async def create_product(self, request: Request) -> Response:
        form = await request.form()
        data, errors, values = admin.validate_product(form)
        stock, stock_error = admin.validate_initial_stock(form.get("stock"))
        values["stock"] = admin.clean(form.get("stock"))
        if stock_error:
            errors["stock"] = stock_error
        if data is None or stock is None:
            return await self._product_page(request, None, values, errors, status_code=422)
        try:
            product = await admin.create_product(current_staff(request), data, stock)
        except admin.CatalogueError as exc:
            return await self._product_page(request, None, values, exc.errors, status_code=422)
        return created_response(request, f"/staff/catalogue/products/{product['id']}", _("Product created."))

    @get("/products/{product_id:int}", name="staff-product", opt=CATALOGUE)
    async def product(self, request: Request, product_id: RowId) -> Template:
        product = await _product_or_404(product_id)
        return await self._product_page(request, product, admin.product_form_values(product), {})

    @post("/products/{product_id:int}", name="staff-product-update", opt=CATALOGUE, status_code=200)
    async def update_product(self, request: Request, product_id: RowId) -> Response:
        product = await _product_or_404(product_id)
        data, errors, values = admin.validate_product(await request.form())
        if data is not None:
            try:
                product = await admin.update_product(current_staff(request), product_id, data)
            except admin.CatalogueError as exc:
                errors = exc.errors
            except admin.NotFound:
                raise NotFoundException("unknown product") from None
        if errors:
            return await self._product_page(request, product, values, errors, status_code=422)
        url = f"/staff/catalogue/products/{product_id}"
        return saved_or_none(request, url, _("Product saved.")) or await self._product_page(
            request, product, admin.product_form_values(product), {}, message=_("Product saved."))

    @post("/products/{product_id:int}/stock", name="staff-product-stock", opt=CATALOGUE, status_code=200)
    async def adjust_stock(self, request: Request, product_id: RowId) -> Response:
        product = await _product_or_404(product_id)
        parsed, errors, values = admin.validate_adjustment(await request.form())
        if parsed is not None:
            try:
                product = await admin.adjust_stock(current_staff(request), product_id, *parsed)
            except admin.CatalogueError as exc:
                errors = exc.errors
                product = await _product_or_404(product_id)
            except admin.NotFound:
                raise NotFoundException("unknown product") from None
        if errors or parsed is None:
            return await self._panel(request, product, STOCK_PANEL, 422, stock_values=values, stock_errors=errors)
        message = _("Stock changed by %(delta)s.", delta=f"{parsed[0]:+d}")
        return saved_or_none(request, f"/staff/catalogue/products/{product_id}", message) or await self._panel(
            request, product, STOCK_PANEL, 200, stock_message=message)

    @post("/products/{product_id:int}/image", name="staff-product-image", opt=CATALOGUE, status_code=200,
          request_max_body_size=UPLOAD_BODY_LIMIT)
    async def upload_image(self, request: Request, product_id: RowId) -> Response:
        product = await _product_or_404(product_id)
        upload = (await request.form()).get("image")
        if not isinstance(upload, UploadFile):
            errors = {"image": _("Choose an image file to upload.")}
            return await self._panel(request, product, IMAGE_PANEL, 422, image_errors=errors)
        try:
            data = await upload.read(admin.IMAGE_MAX_BYTES + 1)
        finally:
            await upload.close()
        try:
            product = await admin.set_product_image(current_staff(request), product_id, data,
                                                    app_settings(request).media_path)
        except admin.ImageRejected as exc:
            status = 413 if exc.too_large else 422
            return await self._panel(request, product, IMAGE_PANEL, status, image_errors=exc.errors)
        except admin.NotFound:
            raise NotFoundException("unknown product") from None
        message = _("Image replaced.")
        return saved_or_none(request, f"/staff/catalogue/products/{product_id}", message) or await self._panel(
            request, product, IMAGE_PANEL, 200, image_message=message)

    @get("/categories", name="staff-categories", opt=CATALOGUE)
    async def categories(self, request: Request) -> Template:
        return staff_template(request, "staff/catalogue/categories.html", categories=await admin.all_categories())

    @get("/categories/new", name="staff-category-new", opt=CATALOGUE)
    async def new_category(self, request: Request) -> Template:
        return self._category_page(request, None, {"active": True, "position": "0"}, {})

    @post("/categories", name="staff-category-create", opt=CATALOGUE, status_code=303)
    async def create_category(self, request: Request) -> Response:
        data, errors, values = admin.validate_category(await request.form())
        if data is None:
            return self._category_page(request, None, values, errors, status_code=422)
        try:
            await admin.create_category(current_staff(request), data)
        except admin.CatalogueError as exc:
            return self._category_page(request, None, values, exc.errors, status_code=422)
        return created_response(request, "/staff/catalogue/categories", _("Category created."))

    @get("/categories/{category_id:int}", name="staff-category", opt=CATALOGUE)
    async def category(self, request: Request, category_id: RowId) -> Template:
        category = await _category_or_404(category_id)
        values = {**category, "position": str(category["position"])}
        return self._category_page(request, category, values, {})

    @post("/categories/{category_id:int}", name="staff-category-update", opt=CATALOGUE, status_code=200)
    async def update_category(self, request: Request, category_id: RowId) -> Response:
        category = await _category_or_404(category_id)
        data, errors, values = admin.validate_category(await request.form())
        if data is not None:
            try:
                category = await admin.update_category(current_staff(request), category_id, data)
            except admin.CatalogueError as exc:
                errors = exc.errors
            except admin.NotFound:
                raise NotFoundException("unknown category") from None
        if errors:
            return self._category_page(request, category, values, errors, status_code=422)
        saved = {**category, "position": str(category["position"])}
        return saved_or_none(request, f"/staff/catalogue/categories/{category_id}", _("Category saved.")) or \
            self._category_page(request, category, saved, {}, message=_("Category saved."))

    # --- rendering: one product page holding three panels; htmx gets the acted-on panel alone ---

    async def _product_page(self, request: Request, product: dict[str, Any] | None, values: dict[str, Any],
                            errors: dict[str, str], status_code: int = 200, message: str = "",
                            fragment: str = "staff/catalogue/_product_form.html", **panels: Any) -> Template:
        context: dict[str, Any] = {
            "stock_values": {}, "stock_errors": {}, "stock_message": "", "image_errors": {}, "image_message": "",
            **panels,
        }
        return staff_template(
            request, "staff/catalogue/product.html", fragment, status_code=status_code, product=product,
            values=values, errors=errors, message=message, categories=await admin.all_categories(),
            vendors=await admin.vendor_choices(product["vendor"] if product else None),
            image_url=admin.image_url, **context,
        )

    async def _panel(self, request: Request, product: dict[str, Any], fragment: str, status_code: int,
                     **panels: Any) -> Template:
        return await self._product_page(request, product, admin.product_form_values(product), {},
                                        status_code=status_code, fragment=fragment, **panels)

    def _category_page(self, request: Request, category: dict[str, Any] | None, values: dict[str, Any],
                       errors: dict[str, str], status_code: int = 200, message: str = "") -> Template:
        return staff_template(
            request, "staff/catalogue/category.html", "staff/catalogue/_category_form.html",
            status_code=status_code, category=category, values=values, errors=errors, message=message,
        )
