"""Checkout form: GET shows it, POST validates it and shows the summary to confirm."""
from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.params import QueryParameter
from litestar.response import Template

from shop.cart.services import load_cart
from shop.checkout.forms import FIELDS, validate_checkout
from shop.checkout.kuwait import GOVERNORATES, GOVERNORATES_BY_SLUG, AREAS_BY_SLUG
from shop.i18n import gettext as _
from shop.web.pages import cart_token, flash, page_context, see_other


def _form_context(values: dict[str, str], errors: dict[str, str]) -> dict[str, object]:
    return {"values": values, "errors": errors, "governorates": GOVERNORATES}


class CheckoutController(Controller):
    path = "/checkout"

    @get("/", name="checkout")
    async def form(self, request: Request) -> Response:
        cart = await load_cart(cart_token(request))
        if cart.is_empty:
            flash(request, _("Your cart is empty."))
            return see_other("/cart")
        values = {name: "" for name in FIELDS}
        context = await page_context(request, cart=cart, **_form_context(values, {}))
        return Template("checkout/checkout.html", context=context)

    @post("/", name="checkout-submit", status_code=200)
    async def submit(self, request: Request) -> Response:
        cart = await load_cart(cart_token(request))
        if cart.is_empty:
            flash(request, _("Your cart is empty."))
            return see_other("/cart")
        form = await request.form()
        details, errors, values = validate_checkout({name: form.get(name, "") for name in FIELDS})
        if details is None or cart.problems:
            context = await page_context(request, cart=cart, **_form_context(values, errors))
            return Template("checkout/checkout.html", context=context, status_code=422)
        governorate, area = AREAS_BY_SLUG[details.area]
        context = await page_context(
            request, cart=cart, details=details, governorate=governorate, area=area
        )
        return Template("checkout/summary.html", context=context)

    @post("/edit", name="checkout-edit", status_code=200)
    async def edit(self, request: Request) -> Response:
        """Back from the summary to the form, with what the customer typed."""
        form = await request.form()
        cart = await load_cart(cart_token(request))
        values = {name: str(form.get(name, ""))[:500] for name in FIELDS}
        context = await page_context(request, cart=cart, **_form_context(values, {}))
        return Template("checkout/checkout.html", context=context)

    @get("/areas", name="checkout-areas")
    async def areas(
        self, governorate: Annotated[str, QueryParameter(name="governorate", max_length=40)] = ""
    ) -> Template:
        """The area <option>s of one governorate, for the htmx-driven address form."""
        chosen = GOVERNORATES_BY_SLUG.get(governorate)
        return Template(
            "checkout/_area_options.html",
            context={"governorates": [chosen] if chosen else GOVERNORATES, "selected": ""},
        )
