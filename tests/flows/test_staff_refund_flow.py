"""Staff refund a KNET payment through Checkout.com (its sandbox) over real HTTP: found by the
KNET payment id, refunded in part, settled by the signed webhook; a lost answer is retried
by the re-check with the same idempotency key and never refunds twice."""
from __future__ import annotations

import re
from typing import Iterator

import httpx
import pytest

from shop.money import fils_to_str
from tests.flows.conftest import checkout, pay, stats
from tests.flows.staff_session import signed_in_staff
from tests.support import wait_until as wait_for, CSRF_FIELD


@pytest.fixture()
def staff(shop: str, database_url: str) -> Iterator[httpx.Client]:
    """A finance account made with `shop createstaff`, signed in over HTTP."""
    with signed_in_staff(shop, database_url, "finance") as client:
        yield client


def paid_order(customer: httpx.Client) -> tuple[str, str]:
    """Buy through the sandbox's KNET page; (order reference, KNET payment id)."""
    page = pay(customer, checkout(customer).headers["location"]).text
    reference = re.search(r"Order (DM[0-9A-Z]+)", page).group(1)
    payment_id = re.search(r'class="receipt-payment-id" dir="ltr">(\d{18})<', page).group(1)
    return reference, payment_id


def new_refund_keys(sandbox: httpx.Client, before: dict) -> list[dict]:
    """The sandbox's refund idempotency records made since `before` (its stats outlive a reset)."""
    return [v for k, v in stats(sandbox)["refunds_by_idempotency_key"].items() if k not in before]


def staff_states(client: httpx.Client, reference: str) -> tuple[str, str, list[str]]:
    html = client.get(f"/staff/orders/{reference}").text
    found = re.search(r'data-order-status="([a-z_]+)" data-payment-status="([a-z_]*)"', html)
    return found.group(1), found.group(2), re.findall(r'data-refund-status="([a-z]+)"', html)


def refund(client: httpx.Client, reference: str, amount: str, reason: str) -> httpx.Response:
    page = client.get(f"/staff/orders/{reference}").text
    attempt = re.search(r'name="attempt" value="(\d+)"', page).group(1)
    return client.post(f"/staff/orders/{reference}/refund", data={
        "attempt": attempt, "amount": amount, "reason": reason, "_csrf_token": CSRF_FIELD.search(page).group(1)})


def test_find_by_knet_payment_id_refund_part_then_the_rest(customer, sandbox, staff) -> None:
    reference, payment_id = paid_order(customer)
    before = stats(sandbox)["refunds_by_idempotency_key"]
    found = staff.get("/staff/orders", params={"q": payment_id}).text
    assert re.findall(r'data-reference="(DM[0-9A-Z]+)"', found) == [reference]

    answer = refund(staff, reference, "1.000", "one cup arrived broken")
    assert answer.status_code == 303
    wait_for(lambda: staff_states(staff, reference) == ("partially_refunded", "partially_refunded", ["succeeded"]))
    page = staff.get(f"/staff/orders/{reference}").text
    for seen in ["payment_refund_pending", "payment_refunded", "refund requested", "one cup arrived broken"]:
        assert seen in page, seen
    assert new_refund_keys(sandbox, before) == [{"requests": 1, "payments": 1}]

    total = int(re.search(r'class="num order-total" data-fils="(\d+)"', page).group(1))
    too_much = refund(staff, reference, fils_to_str(total - 1000 + 1), "too much")
    assert too_much.status_code == 422
    rest = refund(staff, reference, fils_to_str(total - 1000), "customer returned the rest")
    assert rest.status_code == 303
    wait_for(lambda: staff_states(staff, reference) == ("refunded", "refunded", ["succeeded", "succeeded"]))


def test_a_lost_refund_answer_is_retried_by_the_recheck_with_the_same_key(customer, sandbox, staff) -> None:
    reference, _ = paid_order(customer)
    before = stats(sandbox)["refunds_by_idempotency_key"]
    # The sandbox makes the refund but answers after the shop's 2 s timeout.
    sandbox.post("/_control", json={"fail_next": {"refund": "accept_then_timeout"}, "api_delay_ms": 3000})
    answer = refund(staff, reference, "0.500", "late answer")
    assert answer.status_code == 303
    assert "requested" in staff_states(staff, reference)[2]
    # The sandbox's notifications arrive before the shop knows the refund's id: they are kept as
    # a refund made at the provider, next to ours, which is still waiting for an answer.
    wait_for(lambda: staff_states(staff, reference)[2] == ["requested", "succeeded"])
    page = staff.get(f"/staff/orders/{reference}").text
    recheck = staff.post(f"/staff/orders/{reference}/recheck", data={"_csrf_token": CSRF_FIELD.search(page).group(1)})
    assert recheck.status_code == 303
    wait_for(lambda: staff_states(staff, reference) == ("partially_refunded", "partially_refunded", ["succeeded"]))
    # Sent twice with one key, refunded once.
    assert new_refund_keys(sandbox, before) == [{"requests": 2, "payments": 1}]
