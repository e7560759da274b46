"""Checkout, the browser's return from the provider, and provider webhooks."""
from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post, route
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from shop.cart.services import load_cart, new_cart_token
from shop.checkout.forms import FIELDS, validate_checkout
from shop.checkout.kuwait import GOVERNORATES, GOVERNORATES_BY_SLUG
from shop.i18n import current_language, gettext as _
from shop.orders.services import OrderError
from shop.payments import flows
from shop.payments.providers.base import BadSignature
from shop.payments.registry import UnknownProvider
from shop.web.errors import UserError
from shop.web.pages import (
    CART_SESSION_KEY,
    LAST_ORDER_SESSION_KEY,
    active_provider,
    app_settings,
    cart_token,
    flash,
    page_context,
    provider_named,
    see_other,
)


def _form_context(values: dict[str, str], errors: dict[str, str]) -> dict[str, object]:
    return {"values": values, "errors": errors, "governorates": GOVERNORATES}


def go_pay(result: flows.CheckoutResult) -> Response:
    """To the provider's page: a 303, or an auto-submitting form for form-POST providers."""
    if result.redirect_url and result.form_fields:
        return Template("checkout/redirect_form.html",
                        context={"action": result.redirect_url, "fields": result.form_fields})
    if result.redirect_url:
        return see_other(result.redirect_url)
    return see_other(f"/orders/{result.order['public_token']}")


class CheckoutController(Controller):
    path = "/checkout"

    @get("/", name="checkout")
    async def form(self, request: Request) -> Response:
        cart = await load_cart(cart_token(request))
        if cart.is_empty:
            return _empty_cart(request)
        values = {name: "" for name in FIELDS}
        context = await page_context(request, cart=cart, **_form_context(values, {}))
        return Template("checkout/checkout.html", context=context)

    @post("/", name="checkout-submit", status_code=303)
    async def submit(self, request: Request) -> Response:
        """Place the order and start its payment; pressing twice resumes the same payment."""
        token = cart_token(request)
        cart = await load_cart(token)
        if cart.is_empty or token is None:
            return _empty_cart(request)
        form = await request.form()
        details, errors, values = validate_checkout({name: form.get(name, "") for name in FIELDS})
        if details is None or cart.problems:
            context = await page_context(request, cart=cart, **_form_context(values, errors))
            return Template("checkout/checkout.html", context=context, status_code=422)
        settings = app_settings(request)
        try:
            result = await flows.checkout(token, details, current_language.get(), await active_provider(request),
                                          settings.public_url)
        except OrderError as exc:
            context = await page_context(request, cart=cart, order_error=str(exc), **_form_context(values, {}))
            return Template("checkout/checkout.html", context=context, status_code=409)
        # The cart is spent; the next purchase starts a new one. The order stays reachable.
        request.session[CART_SESSION_KEY] = new_cart_token()
        request.session[LAST_ORDER_SESSION_KEY] = result.order["public_token"]
        return go_pay(result)

    @get("/areas", name="checkout-areas")
    async def areas(self, governorate: Annotated[str, QueryParameter(name="governorate", max_length=40)] = "") -> Template:
        """The area <option>s of one governorate, for the htmx-driven address form."""
        chosen = GOVERNORATES_BY_SLUG.get(governorate)
        return Template(
            "checkout/_area_options.html",
            context={"governorates": [chosen] if chosen else GOVERNORATES, "selected": ""},
        )


def _empty_cart(request: Request) -> Response:
    last_order = request.session.get(LAST_ORDER_SESSION_KEY) if request.scope.get("session") else None
    if isinstance(last_order, str):
        # A second tab pressing Pay after the first placed the order: show that order.
        return see_other(f"/orders/{last_order}")
    flash(request, _("Your cart is empty."))
    return see_other("/cart")


@route("/payments/{provider_slug:str}/return", http_method=["GET", "POST"], name="payment-return",
       exclude_from_csrf=True, status_code=303)
async def payment_return(request: Request, provider_slug: FromPath[str]) -> Response:
    """The customer is back from the provider. No session needed: the URL says which attempt."""
    try:
        provider = provider_named(request, provider_slug)
    except UnknownProvider:
        raise NotFoundException() from None
    params: dict[str, str] = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    try:
        order = await flows.handle_return(provider, params)
    except BadSignature:
        raise HTTPException(status_code=400, detail="bad signature") from None
    if order is None:
        # No attempt matches what came back (an error page of the provider, a stale link): say so.
        raise UserError(_("We could not match this payment to an order. If money was taken, it will be "
                          "refunded or confirmed by email; please contact us with the time of payment."))
    return see_other(f"/orders/{order['public_token']}")


@post("/webhooks/{provider_slug:str}", name="webhook", exclude_from_csrf=True, status_code=200)
async def webhook(request: Request, provider_slug: FromPath[str]) -> Response:
    """Verify, store, apply, answer fast. A bad signature is 401 and changes nothing."""
    try:
        provider = provider_named(request, provider_slug)
    except UnknownProvider:
        return Response({"error": "unknown provider"}, status_code=404)
    body = await request.body()
    public_url = app_settings(request).public_url
    try:
        outcome = await flows.handle_webhook(provider, request.headers, body)
    except BadSignature:
        reply = provider.rejected_webhook_reply(public_url)
        return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)
    reply = provider.webhook_reply(outcome.observations, public_url)
    content = reply.body
    if isinstance(content, dict):
        content = {**content, "duplicates": outcome.duplicates}
    return Response(content, status_code=reply.status_code, media_type=reply.media_type)
