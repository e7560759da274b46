"""The Payment Setup flavour of Checkout.com: setup + confirm, then the same payment as `checkout`."""
from typing import Iterator

import httpx
import pytest

from tests.flows.conftest import DECLINED_CARD, checkout, pay, states
from tests.support import live_server


@pytest.fixture(scope="module")
def setup_shop(database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER="checkout_setup", SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture()
def customer(setup_shop: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=setup_shop, timeout=30, follow_redirects=False) as client:
        yield client


def test_setup_confirm_and_pay(customer: httpx.Client, database_url: str) -> None:
    started = checkout(customer, 1)
    assert "/sandbox/checkout/knet-external/redirect/" in started.headers["location"]
    page = pay(customer, started.headers["location"])
    assert states(page.text) == ("paid", "captured")
    # The attempt's timeline shows the setup was created, then confirmed.
    from shop.app import create_app
    from shop.payments.tables import PaymentEvent
    from tests.conftest import test_settings
    from tests.web.conftest import run

    create_app(test_settings(database_url))  # binds the tables to this database

    response = run(PaymentEvent.select(PaymentEvent.payload).where(PaymentEvent.kind == "response")
                   .order_by(PaymentEvent.id, ascending=False).first())
    assert '"setup_id": "set_' in response["payload"]


def test_setup_decline(customer: httpx.Client) -> None:
    page = pay(customer, checkout(customer).headers["location"], card=DECLINED_CARD)
    assert states(page.text) == ("payment_failed", "declined")
