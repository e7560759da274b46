"""The customer's order page (status and receipt) and the retry after a failed payment."""
from __future__ import annotations


from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from shop.checkout.controllers import go_pay
from shop.checkout.kuwait import AREAS_BY_SLUG, GOVERNORATES_BY_SLUG
from shop.orders.services import OrderError, order_by_token, order_lines
from shop.payments import flows
from shop.payments.service import latest_attempt
from shop.payments.states import CAPTURED_PAYMENT, OPEN_PAYMENT, PaymentStatus
from shop.web.pages import active_provider, app_settings, flash, is_htmx, page_context, see_other


async def order_context(order: dict) -> dict:
    attempt = await latest_attempt(order["id"])
    payment = PaymentStatus(attempt["status"]) if attempt else None
    area = AREAS_BY_SLUG.get(order["area"])
    return {
        "order": order,
        "lines": await order_lines(order["id"]),
        "attempt": attempt,
        "payment_status": payment.value if payment else "",
        "verifying": order["status"] == "pending_payment" and payment in OPEN_PAYMENT,
        "paid": payment in CAPTURED_PAYMENT if payment else False,
        "governorate": GOVERNORATES_BY_SLUG.get(order["governorate"]),
        "area": area[1] if area else None,
    }


class OrderController(Controller):
    path = "/orders"

    @get("/{public_token:str}", name="order")
    async def show(self, request: Request, public_token: FromPath[str]) -> Template:
        order = await order_by_token(public_token)
        if order is None:
            raise NotFoundException()
        context = await order_context(order)
        if is_htmx(request):
            return Template("orders/_order.html", context=context)
        response = Template("orders/order.html", context=await page_context(request, **context))
        return response

    @post("/{public_token:str}/retry", name="order-retry", status_code=303)
    async def retry(self, request: Request, public_token: FromPath[str]) -> Response:
        order = await order_by_token(public_token)
        if order is None:
            raise NotFoundException()
        try:
            result = await flows.retry(order, await active_provider(request), app_settings(request).public_url)
        except OrderError as exc:
            flash(request, str(exc), "error")
            return see_other(f"/orders/{public_token}")
        return go_pay(result)
