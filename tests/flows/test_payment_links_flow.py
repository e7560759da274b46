"""Staff send a KNET payment link for an order whose payment failed, through the active provider
(UPayments invoice, APS payment link), over real HTTP: the customer pays on the link and the
order settles through the ordinary return, like any other attempt."""
from __future__ import annotations

import re
from typing import Iterator

import httpx
import pytest

from tests.flows import test_aps_flow as aps
from tests.flows.conftest import DECLINED_CARD, checkout, pay, states
from tests.flows.staff_session import signed_in_staff
from tests.flows.test_staff_refund_flow import staff_states
from tests.flows.test_upayments_flow import knet_page
from tests.support import CSRF_FIELD, live_server

LINK = re.compile(r"(https?://[^\s<\"]+)")


@pytest.fixture(scope="module", params=["upayments", "aps"])
def shop(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER=request.param, SHOP_PROVIDER_TIMEOUT_S="5",
                     SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture(scope="module")
def operations(shop: str, database_url: str) -> Iterator[httpx.Client]:
    with signed_in_staff(shop, database_url, "operations") as client:
        yield client



def failed_order(customer: httpx.Client, provider: str) -> str:
    """Buy and have the card declined: the order awaits payment. Its reference."""
    if provider == "aps":
        page = aps.pay(customer, card=DECLINED_CARD)
    else:
        page = pay(customer, knet_page(customer, checkout(customer).headers["location"]), card=DECLINED_CARD)
    assert states(page.text) == ("payment_failed", "declined")
    return re.search(r"Order (DM[0-9A-Z]+)", page.text).group(1)


def send_link(staff: httpx.Client, reference: str, channel: str) -> httpx.Response:
    page = staff.get(f"/staff/orders/{reference}").text
    return staff.post(f"/staff/orders/{reference}/payment-link",
                      data={"channel": channel, "_csrf_token": CSRF_FIELD.search(page).group(1)})


def pay_on_link(shop: str, provider: str, link: str) -> httpx.Response:
    """Someone else's browser (no session of the shop) opens the link and pays; the order page."""
    with httpx.Client(base_url=shop, timeout=30, follow_redirects=False) as phone_customer:
        opened = phone_customer.get(link)
        assert opened.status_code == 303, opened.text[:300]
        target = str(httpx.URL(link).join(opened.headers["location"]))
        if provider == "aps":
            return aps.come_back(phone_customer, *aps.knet(phone_customer, target))
        return pay(phone_customer, knet_page(phone_customer, target))


def test_a_payment_link_pays_an_order_whose_payment_failed(customer, operations, shop, request) -> None:
    provider = request.node.callspec.params["shop"]
    reference = failed_order(customer, provider)
    assert "Make payment link" in operations.get(f"/staff/orders/{reference}").text
    sent = send_link(operations, reference, "link")
    assert sent.status_code == 303
    shown = operations.get(f"/staff/orders/{reference}").text
    assert "Payment link made" in shown
    link = LINK.search(shown.split("Send it to the customer:", 1)[1]).group(1)
    assert staff_states(operations, reference)[:2] == ("pending_payment", "pending")
    # While the link is open, a second one is refused: both could be paid.
    again = send_link(operations, reference, "link")
    assert again.status_code == 409 and "still open" in again.text

    page = pay_on_link(shop, provider, link)
    assert states(page.text) == ("paid", "captured")
    assert staff_states(operations, reference)[:2] == ("paid", "captured")
    # Paid: no more links.
    refused = send_link(operations, reference, "link")
    assert refused.status_code == 409 and "Only an order awaiting payment" in refused.text


def test_a_link_sent_by_email(customer, operations, shop, request) -> None:
    provider = request.node.callspec.params["shop"]
    reference = failed_order(customer, provider)
    assert send_link(operations, reference, "email").status_code == 303
    shown = operations.get(f"/staff/orders/{reference}").text
    assert "Payment link sent by email to" in shown
    if provider == "upayments":
        link = LINK.search(shown.split("Payment link sent by email to", 1)[1].split(":", 1)[1]).group(1)
        stats = httpx.get(f"{shop}/sandbox/upayments/_stats").json()
        assert any(m["channel"] == "email" and m["link"] == link for m in stats["invoice_messages"])
