"""UPayments refund news is not signed: the shop asks (check-refund-status) instead of trusting it,
so a staff refund is settled by reconciliation over real HTTP."""
from typing import Iterator

import pytest

import re

from tests.flows.conftest import checkout, pay
from tests.flows.test_staff_refund_flow import refund, staff, staff_states, wait_for  # noqa: F401
from tests.flows.test_upayments_flow import knet_page
from tests.support import live_server, run_shop


@pytest.fixture(scope="module")
def shop(database_url: str) -> Iterator[str]:
    """Overrides the flows' shop: UPayments is the active provider here."""
    with live_server(database_url, SHOP_PROVIDER="upayments", SHOP_PROVIDER_TIMEOUT_S="5",
                     SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


def test_a_refund_stays_pending_until_reconciliation_asks(customer, staff, database_url, shop) -> None:  # noqa: F811
    page = pay(customer, knet_page(customer, checkout(customer).headers["location"])).text
    reference = re.search(r"Order (DM[0-9A-Z]+)", page).group(1)
    assert refund(staff, reference, "1.000", "a box arrived dented").status_code == 303
    order, payment, refunds = staff_states(staff, reference)
    assert refunds == ["pending"] and payment == "refund_pending"
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=shop)
    assert result.returncode == 0, result.stderr
    assert "refunds settled 1" in result.stdout
    wait_for(lambda: staff_states(staff, reference) == ("partially_refunded", "partially_refunded", ["succeeded"]))
