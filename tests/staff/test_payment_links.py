"""Payment links on the staff order page, in process: who may, which orders, what staff are told
when the active provider has no links or does not answer, in English and Arabic."""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from shop.payments.choice import choose_provider
from shop.payments.providers.base import Observation
from shop.payments.service import apply_observation
from shop.payments.states import PaymentStatus as P
from shop.payments.tables import PaymentAttempt
from shop.settings import Settings
from shop.staff.auth import Role
from tests.staff.test_orders import an_order, audits, order_status, post
from tests.web.conftest import run

HTMX = {"HX-Request": "true"}


def failed_order() -> dict:
    made = an_order(paid=False)
    run(apply_observation(made["attempt"]["id"], Observation(status=P.DECLINED, failure_reason="NOT CAPTURED"),
                          "inquiry"))
    assert order_status(made["order"]["id"]) == "payment_failed"
    return made["order"]


@pytest.fixture()
def upayments_active(settings: Settings) -> Iterator[None]:
    """UPayments (which has links) as the active provider; its API is unreachable in process."""
    run(choose_provider("upayments", settings, "tests"))
    yield
    run(choose_provider("checkout", settings, "tests"))


def test_links_are_for_operations_and_owners(staff_client) -> None:
    finance, ops = staff_client(Role.FINANCE), staff_client(Role.OPERATIONS)
    order = failed_order()
    path = f"/staff/orders/{order['reference']}/payment-link"
    assert post(finance, path, {"channel": "link"}).status_code == 403
    page = ops.get(f"/staff/orders/{order['reference']}").text
    assert "Make payment link" in page and 'name="channel"' in page
    assert "Make payment link" not in finance.get(f"/staff/orders/{order['reference']}").text


def test_a_provider_without_links_is_named_in_the_right_language(staff_client) -> None:
    ops = staff_client(Role.OPERATIONS)
    order = failed_order()
    path = f"/staff/orders/{order['reference']}/payment-link"
    refused = post(ops, path, {"channel": "link"})
    assert refused.status_code == 409 and "cannot send payment links" in refused.text
    ops.get("/staff/orders", params={"lang": "ar"})
    refused = post(ops, path, {"channel": "link"})
    assert refused.status_code == 409 and "مزود الدفع الحالي لا يتيح روابط الدفع" in refused.text
    assert run(PaymentAttempt.count().where(PaymentAttempt.order == order["id"])) == 1
    assert audits("order.payment_link", order["reference"]) == []


def test_paid_orders_and_unknown_channels_are_refused(staff_client, upayments_active) -> None:
    ops = staff_client(Role.OPERATIONS)
    paid = an_order(paid=True)["order"]
    refused = post(ops, f"/staff/orders/{paid['reference']}/payment-link", {"channel": "link"})
    assert refused.status_code == 409 and "Only an order awaiting payment" in refused.text
    failed = failed_order()
    fax = post(ops, f"/staff/orders/{failed['reference']}/payment-link", {"channel": "fax"})
    assert fax.status_code == 409 and "by email or by SMS" in fax.text
    assert order_status(failed["id"]) == "payment_failed"


def test_a_provider_that_does_not_answer_leaves_a_pending_attempt(staff_client, upayments_active) -> None:
    ops = staff_client(Role.OPERATIONS)
    order = failed_order()
    answer = post(ops, f"/staff/orders/{order['reference']}/payment-link", {"channel": "sms"}, htmx=True)
    assert answer.status_code == 200 and "did not answer" in answer.text and "<html" not in answer.text
    # The link may exist at UPayments: a pending attempt the re-check asks about, never a failed one.
    attempts = run(PaymentAttempt.select().where(PaymentAttempt.order == order["id"]).order_by(PaymentAttempt.number))
    assert [(a["provider"], a["status"]) for a in attempts] == [("checkout", "declined"), ("upayments", "pending")]
    assert order_status(order["id"]) == "pending_payment"
    [row] = audits("order.payment_link", order["reference"])
    assert json.loads(row["after"])["channel"] == "sms" and json.loads(row["after"])["outcome"] == "unavailable"
    # Until it is settled or expires, no second link: the first one may have reached the customer.
    again = post(ops, f"/staff/orders/{order['reference']}/payment-link", {"channel": "link"})
    assert again.status_code == 409 and "still open" in again.text
