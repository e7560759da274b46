"""Staff orders over HTTP: search and filters, the order page and its timeline, the actions
(re-check, fulfil, cancel, refund) with roles, CSRF, htmx fragments, bad input, Arabic."""
from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.orders.tables import Order
from shop.payments.providers.base import KnetReceipt, Observation
from shop.payments.service import apply_observation
from shop.payments.states import PaymentStatus as P
from shop.payments.tables import PaymentAttempt, PaymentEvent, Refund
from shop.settings import Settings
from shop.staff.auth import Role
from shop.staff.tables import AuditLog
from tests.conftest import BACKENDS, migrated_database
from tests.conftest import test_settings as settings_for
from tests.integration.conftest import make_attempt, make_order, make_product, product_row
from tests.staff.conftest import csrf, sign_in
from tests.web.conftest import run

HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Its own database: these tests add products and orders the storefront tests must not see."""
    yield from migrated_database(request, tmp_path_factory)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return settings_for(database_url)


@pytest.fixture(scope="module")
def signed_in(settings: Settings) -> Iterator[Callable[[Role], TestClient]]:
    """One signed-in client per role for the module (signing in costs two argon2 rounds).
    Tests that switch the language use `staff_client` instead, so the cookie stays theirs."""
    clients: dict[Role, TestClient] = {}

    def get(role: Role) -> TestClient:
        if role not in clients:
            client = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000")
            client.__enter__()
            sign_in(client, role)
            clients[role] = client
        return clients[role]

    yield get
    for client in clients.values():
        client.__exit__(None, None, None)


@pytest.fixture()
def finance(signed_in) -> TestClient:
    return signed_in(Role.FINANCE)


@pytest.fixture()
def ops(signed_in) -> TestClient:
    return signed_in(Role.OPERATIONS)


def post(client: TestClient, path: str, data: dict[str, str] | None = None, htmx: bool = False):
    data = data or {}
    if htmx:
        return client.post(path, data=data, headers={**HTMX, "x-csrftoken": csrf(client)}, follow_redirects=False)
    return client.post(path, data={**data, "_csrf_token": csrf(client)}, follow_redirects=False)


def knet_id() -> str:
    return "1002" + "".join(secrets.choice("0123456789") for _ in range(14))


async def _order(paid: bool, quantity: int = 2, price_fils: int = 5000) -> dict[str, Any]:
    product = await make_product(stock=10, price_fils=price_fils)
    order = await make_order([(product, quantity)])
    attempt = await make_attempt(order)
    payment_id = knet_id()
    if paid:
        await apply_observation(attempt["id"], Observation(
            status=P.CAPTURED, amount_fils=order["total_fils"], currency="KWD",
            receipt=KnetReceipt(payment_id=payment_id, transaction_id="201914315601265", bank_reference="914315601265",
                                result="CAPTURED")), "inquiry")
    return {"order": await Order.select().where(Order.id == order["id"]).first(), "product": product,
            "attempt": await PaymentAttempt.select().where(PaymentAttempt.id == attempt["id"]).first(),
            "knet_payment_id": payment_id}


def an_order(paid: bool = True, **kw: Any) -> dict[str, Any]:
    return run(_order(paid, **kw))


def states(html: str) -> tuple[str, str]:
    found = re.search(r'id="order-detail"[^>]*data-order-status="([a-z_]+)" data-payment-status="([a-z_]*)"', html)
    assert found, html[:500]
    return found.group(1), found.group(2)


def order_status(order_id: int) -> str:
    return run(Order.select(Order.status).where(Order.id == order_id).first())["status"]


def refunds_of(attempt_id: int) -> list[dict[str, Any]]:
    return run(Refund.select().where(Refund.attempt == attempt_id).order_by(Refund.id))


def audits(action: str, reference: str) -> list[dict[str, Any]]:
    return run(AuditLog.select().where((AuditLog.action == action) & (AuditLog.target_id == reference)))


# ---------------------------------------------------------------- who may


def test_anonymous_visitors_are_sent_to_sign_in(client, signed_in) -> None:
    signed_in(Role.OWNER)  # binds the tables
    made = an_order()
    for path in ["/staff/orders", f"/staff/orders/{made['order']['reference']}", "/staff/attention"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/staff/login")
    token = csrf(client)
    response = client.post(f"/staff/orders/{made['order']['reference']}/refund",
                           data={"_csrf_token": token, "amount": "1", "reason": "x"}, follow_redirects=False)
    assert response.status_code == 303 and refunds_of(made["attempt"]["id"]) == []


@pytest.mark.parametrize("role, action, allowed", [
    (Role.OPERATIONS, "refund", False), (Role.FINANCE, "refund", True), (Role.OWNER, "refund", True),
    (Role.FINANCE, "fulfil", False), (Role.OPERATIONS, "fulfil", True), (Role.OWNER, "fulfil", True),
])
def test_each_action_checks_the_role_on_the_server(signed_in, role, action, allowed) -> None:
    client = signed_in(role)
    made = an_order()
    response = post(client, f"/staff/orders/{made['order']['reference']}/{action}",
                    {"attempt": str(made["attempt"]["id"]), "amount": "1.000", "reason": "test"})
    if allowed:
        assert response.status_code == 303, response.text
    else:
        assert response.status_code == 403
        assert order_status(made["order"]["id"]) == "paid" and refunds_of(made["attempt"]["id"]) == []


def test_every_post_needs_the_csrf_token(finance) -> None:
    made = an_order()
    response = finance.post(f"/staff/orders/{made['order']['reference']}/refund",
                            data={"attempt": str(made["attempt"]["id"]), "amount": "1", "reason": "x"},
                            follow_redirects=False)
    assert response.status_code == 403 and refunds_of(made["attempt"]["id"]) == []


# ---------------------------------------------------------------- the list


def test_search_finds_an_order_by_every_identifier(ops) -> None:
    made = an_order()
    order, attempt = made["order"], made["attempt"]
    for q in [order["reference"], order["reference"].lower(), made["knet_payment_id"], attempt["merchant_reference"],
              attempt["provider_payment_id"], attempt["knet_transaction_id"], attempt["knet_bank_reference"]]:
        page = ops.get("/staff/orders", params={"q": q})
        assert page.status_code == 200
        assert f'data-reference="{order["reference"]}"' in page.text, q
    by_email = ops.get("/staff/orders", params={"q": order["email"].upper()}).text
    assert f'data-reference="{order["reference"]}"' in by_email
    by_phone = ops.get("/staff/orders", params={"q": order["phone"][-8:-4] + " " + order["phone"][-4:]}).text
    assert f'data-reference="{order["reference"]}"' in by_phone
    nothing = ops.get("/staff/orders", params={"q": "no-such-order-" + secrets.token_hex(3)}).text
    assert 'data-total="0"' in nothing and "order-row" not in nothing


def test_filters_combine_and_htmx_gets_only_the_results(ops) -> None:
    paid, unpaid = an_order(), an_order(paid=False)
    today = datetime.now(timezone(timedelta(hours=3))).date()
    both = f"{paid['order']['reference']}"
    page = ops.get("/staff/orders", params={"status": "paid", "payment_status": "captured", "provider": "checkout",
                                            "from": str(today), "to": str(today)})
    assert f'data-reference="{paid["order"]["reference"]}"' in page.text
    assert f'data-reference="{unpaid["order"]["reference"]}"' not in page.text
    assert 'hx-push-url="true"' in page.text
    pending = ops.get("/staff/orders", params={"payment_status": "pending"}, headers=HTMX)
    assert pending.status_code == 200 and "<html" not in pending.text
    assert f'data-reference="{unpaid["order"]["reference"]}"' in pending.text
    assert f'data-reference="{both}"' not in pending.text
    future = ops.get("/staff/orders", params={"from": str(today + timedelta(days=1))}).text
    assert f'data-reference="{paid["order"]["reference"]}"' not in future


def test_the_list_pages_25_at_a_time(ops) -> None:
    for _ in range(26 - run(Order.count())):
        an_order(paid=False, quantity=1)
    first = ops.get("/staff/orders")
    assert first.text.count('class="order-row"') == 25 and 'rel="next"' in first.text
    second = ops.get("/staff/orders", params={"page": "2"})
    assert second.status_code == 200 and second.text.count('class="order-row"') >= 1


@pytest.mark.parametrize("params", [{"status": "lost"}, {"payment_status": "x"}, {"provider": "paypal"},
                                    {"from": "2025-13-45"}, {"from": "2025-02-01", "to": "2025-01-01"},
                                    {"page": "-1"}, {"page": "abc"}])
def test_bad_filters_are_422_with_a_message(ops, params) -> None:
    response = ops.get("/staff/orders", params=params)
    assert response.status_code == 422 and 'class="flash flash-error"' in response.text
    fragment = ops.get("/staff/orders", params=params, headers=HTMX)
    assert fragment.status_code == 422 and "<html" not in fragment.text


def test_the_list_and_the_order_page_in_arabic(staff_client) -> None:
    ops = staff_client(Role.OPERATIONS)
    made = an_order()
    listing = ops.get("/staff/orders", params={"lang": "ar", "q": made["order"]["reference"]})
    assert listing.status_code == 200 and 'dir="rtl"' in listing.text and 'lang="ar"' in listing.text
    page = ops.get(f"/staff/orders/{made['order']['reference']}")
    assert page.status_code == 200 and 'dir="rtl"' in page.text
    assert states(page.text) == ("paid", "captured")
    bad = ops.get("/staff/orders", params={"status": "lost"})
    assert bad.status_code == 422 and 'dir="rtl"' in bad.text


# ---------------------------------------------------------------- the order page


def test_the_order_page_shows_everything_with_payloads_redacted(ops) -> None:
    made = an_order()
    run(PaymentEvent.insert(PaymentEvent(
        attempt=made["attempt"]["id"], provider="checkout", kind="webhook", event_type="payment_captured",
        signature_ok=True, status_before="pending", status_after="captured", note="stored before redaction existed",
        payload=json.dumps({"card_number": "8888880000000001", "nested": {"api_key": "sk_live_x"},
                            "text": "paid with 4111111111111111"}),
    )))
    page = ops.get(f"/staff/orders/{made['order']['reference']}")
    html = page.text
    assert page.status_code == 200 and states(html) == ("paid", "captured")
    assert made["knet_payment_id"] in html and "payment_captured" in html and "signature valid" in html
    assert "8888880000000001" not in html and "sk_live_x" not in html and "4111111111111111" not in html
    assert "[redacted]" in html and "411111…1111" in html
    assert made["order"]["customer_name"] in html and "KWD 10.000" in html
    assert "pending → captured" in html
    fragment = ops.get(f"/staff/orders/{made['order']['reference']}", headers=HTMX)
    assert "<html" not in fragment.text and 'id="order-detail"' in fragment.text
    timeline = ops.get(f"/staff/orders/{made['order']['reference']}/timeline", headers=HTMX)
    assert 'id="timeline"' in timeline.text and 'hx-swap-oob="true"' in timeline.text and "<html" not in timeline.text
    assert ops.get("/staff/orders/NOPE").status_code == 404


# ---------------------------------------------------------------- actions


def test_a_refund_without_a_provider_answer_stays_requested(finance) -> None:
    made = an_order()
    reference = made["order"]["reference"]
    response = post(finance, f"/staff/orders/{reference}/refund",
                    {"attempt": str(made["attempt"]["id"]), "amount": "2.5", "reason": "scratched lid"}, htmx=True)
    assert response.status_code == 200 and "<html" not in response.text
    assert "did not answer" in response.text and 'data-refund-status="requested"' in response.text
    [refund] = refunds_of(made["attempt"]["id"])
    assert (refund["amount_fils"], refund["status"], refund["reason"]) == (2500, "requested", "scratched lid")
    assert len(audits("order.refund", reference)) == 1
    # The cap counts it: at most 7.500 more.
    too_much = post(finance, f"/staff/orders/{reference}/refund",
                    {"attempt": str(made["attempt"]["id"]), "amount": "7.501", "reason": "more"}, htmx=True)
    assert too_much.status_code == 422 and "KWD 7.500" in too_much.text
    assert len(refunds_of(made["attempt"]["id"])) == 1


@pytest.mark.parametrize("amount, reason, message", [
    ("abc", "why", "at most 3 decimals"), ("1.2345", "why", "at most 3 decimals"), ("", "why", "at most 3 decimals"),
    ("0", "why", "greater than zero"), ("1.000", "", "Give a reason"), ("10.001", "why", "At most KWD 10.000"),
])
def test_bad_refund_input_is_422_and_changes_nothing(finance, amount, reason, message) -> None:
    made = an_order()
    response = post(finance, f"/staff/orders/{made['order']['reference']}/refund",
                    {"attempt": str(made["attempt"]["id"]), "amount": amount, "reason": reason}, htmx=True)
    assert response.status_code == 422 and message in response.text
    assert refunds_of(made["attempt"]["id"]) == []
    assert not audits("order.refund", made["order"]["reference"])
    plain = post(finance, f"/staff/orders/{made['order']['reference']}/refund",
                 {"attempt": str(made["attempt"]["id"]), "amount": amount, "reason": reason})
    assert plain.status_code == 422 and "<html" in plain.text


@pytest.mark.parametrize("attempt", ["9" * 30, "abc", "", "0"])
def test_a_refund_of_an_unknown_payment_is_422(finance, attempt) -> None:
    made = an_order()
    response = post(finance, f"/staff/orders/{made['order']['reference']}/refund",
                    {"attempt": attempt, "amount": "1.000", "reason": "why"}, htmx=True)
    assert response.status_code == 422 and "Choose a payment" in response.text
    assert refunds_of(made["attempt"]["id"]) == []


def test_a_refund_error_in_arabic(staff_client) -> None:
    finance = staff_client(Role.FINANCE)
    made = an_order()
    finance.get("/staff/orders?lang=ar")
    response = post(finance, f"/staff/orders/{made['order']['reference']}/refund",
                    {"attempt": str(made["attempt"]["id"]), "amount": "x", "reason": "y"})
    assert response.status_code == 422 and 'dir="rtl"' in response.text


def test_fulfil_marks_a_paid_order_once(ops) -> None:
    made = an_order()
    reference = made["order"]["reference"]
    response = post(ops, f"/staff/orders/{reference}/fulfil", htmx=True)
    assert response.status_code == 200 and states(response.text) == ("fulfilled", "captured")
    again = post(ops, f"/staff/orders/{reference}/fulfil", htmx=True)
    assert again.status_code == 409 and "Only a paid order" in again.text
    assert len(audits("order.fulfil", reference)) == 1
    plain = post(ops, f"/staff/orders/{an_order()['order']['reference']}/fulfil")
    assert plain.status_code == 303


def test_operations_cancel_an_unpaid_order_and_its_stock_comes_back(ops) -> None:
    made = an_order(paid=False)
    assert run(product_row(made["product"]["id"]))["reserved"] == 2
    response = post(ops, f"/staff/orders/{made['order']['reference']}/cancel", {"reason": "duplicate order"}, htmx=True)
    assert response.status_code == 200 and states(response.text)[0] == "cancelled"
    row = run(product_row(made["product"]["id"]))
    assert (row["stock"], row["reserved"]) == (10, 0)
    again = post(ops, f"/staff/orders/{made['order']['reference']}/cancel", htmx=True)
    assert again.status_code == 409 and run(product_row(made["product"]["id"]))["reserved"] == 0
    [entry] = audits("order.cancel", made["order"]["reference"])
    assert entry["reason"] == "duplicate order"


def test_cancelling_a_paid_order_needs_finance_and_a_confirmation(ops, finance) -> None:
    made = an_order()
    reference = made["order"]["reference"]
    assert post(ops, f"/staff/orders/{reference}/cancel", htmx=True).status_code == 403
    asked = post(finance, f"/staff/orders/{reference}/cancel", htmx=True)
    assert asked.status_code == 200 and 'name="confirm" value="yes"' in asked.text and "KWD 10.000" in asked.text
    assert order_status(made["order"]["id"]) == "paid" and refunds_of(made["attempt"]["id"]) == []
    no_reason = post(finance, f"/staff/orders/{reference}/cancel", {"confirm": "yes", "reason": ""}, htmx=True)
    assert no_reason.status_code == 422 and refunds_of(made["attempt"]["id"]) == []
    done = post(finance, f"/staff/orders/{reference}/cancel", {"confirm": "yes", "reason": "out of stock"}, htmx=True)
    assert done.status_code == 200
    [refund] = refunds_of(made["attempt"]["id"])
    assert (refund["amount_fils"], refund["status"]) == (10000, "requested")  # the provider is down here
    assert run(product_row(made["product"]["id"]))["stock"] == 10  # sold 2, put back 2
    assert audits("order.cancel", reference) and audits("order.refund", reference)
    assert 'data-stock-state="returned"' in done.text


def test_recheck_with_the_provider_down_changes_nothing(ops) -> None:
    made = an_order(paid=False)
    reference = made["order"]["reference"]
    events = run(PaymentEvent.count().where(PaymentEvent.attempt == made["attempt"]["id"]))
    response = post(ops, f"/staff/orders/{reference}/recheck", htmx=True)
    assert response.status_code == 503 and "did not answer" in response.text
    assert states(response.text) == ("pending_payment", "pending")
    assert run(PaymentEvent.count().where(PaymentEvent.attempt == made["attempt"]["id"])) == events
    plain = post(ops, f"/staff/orders/{reference}/recheck")
    assert plain.status_code == 503 and "did not answer" in plain.text


# ---------------------------------------------------------------- needs attention


def test_needs_attention_lists_each_kind_with_a_link(ops) -> None:
    flagged, short, stuck, unsettled = an_order(), an_order(), an_order(), an_order(paid=False)
    run(Order.update({Order.needs_attention: True, Order.attention_reason: "amount mismatch: provider reported 1"})
        .where(Order.id == flagged["order"]["id"]))
    run(Order.update({Order.stock_state: "short"}).where(Order.id == short["order"]["id"]))
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    run(Refund.insert(Refund(attempt=stuck["attempt"]["id"], amount_fils=1000, status="pending",
                             idempotency_key=secrets.token_hex(16), reason="x", created_at=two_hours_ago)))
    run(PaymentAttempt.update({PaymentAttempt.expires_at: two_hours_ago}).where(
        PaymentAttempt.id == unsettled["attempt"]["id"]))
    page = ops.get("/staff/attention")
    assert page.status_code == 200
    sections = {m.group(1): m.group(0) for m in
                re.finditer(r'<section class="attention-section" id="([a-z-]+)".*?</section>', page.text, re.S)}
    for section, made in [("flagged", flagged), ("short", short), ("stuck-refunds", stuck), ("unsettled", unsettled)]:
        assert f'href="/staff/orders/{made["order"]["reference"]}"' in sections[section], section
    assert "amount mismatch" in sections["flagged"]
    arabic = ops.get("/staff/attention?lang=ar")
    assert arabic.status_code == 200 and 'dir="rtl"' in arabic.text
    ops.get("/staff/attention?lang=en")  # the shared client goes back to English
