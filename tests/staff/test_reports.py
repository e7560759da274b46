"""Reports over HTTP: who may open them, the CSV downloads, refused input, the dashboard in Arabic."""
from __future__ import annotations

import csv
import io
import re
import secrets
from datetime import datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.orders.tables import Order
from shop.settings import Settings
from shop.staff.auth import Role
from shop.staff.reports import KUWAIT_TIME
from tests.staff.conftest import sign_in
from tests.web.conftest import run

ORDERS_CSV = "/staff/reports/orders.csv?from=2016-04-04&to=2016-04-05"
RECONCILIATION_CSV = "/staff/reports/reconciliation.csv?date=2016-04-04"
ROUTES = ["/staff/reports", ORDERS_CSV, RECONCILIATION_CSV]


@pytest.fixture(scope="module")
def staff_client(settings: Settings):
    """One signed-in client per role for this module (signing in hashes with argon2: slow on purpose)."""
    clients: dict[Role, TestClient] = {}

    def get(role: Role) -> TestClient:
        if role not in clients:
            clients[role] = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000").__enter__()
            sign_in(clients[role], role)
        clients[role].cookies.delete("lang")  # a test's ?lang=ar must not carry over to the next
        return clients[role]

    yield get
    for client in clients.values():
        client.__exit__(None, None, None)


@pytest.mark.parametrize(("role", "allowed"), [(Role.OWNER, True), (Role.FINANCE, True), (Role.OPERATIONS, False)])
def test_only_owners_and_finance_see_reports(staff_client, role: Role, allowed: bool) -> None:
    client = staff_client(role)
    for path in ROUTES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == (200 if allowed else 403), path
        assert response.headers["cache-control"] == "no-store"


def test_visitors_and_customers_are_sent_to_sign_in(client, product) -> None:
    from tests.support import post_form

    for stage in ("anonymous", "customer"):
        for path in ROUTES:
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith("/staff/login"), (stage, path)
        post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})  # now a customer


def insert_order(**values: Any) -> dict[str, Any]:
    """An order row straight into the table: the shared database's catalogue and stock stay as they are."""
    row = {"public_token": secrets.token_urlsafe(24), "reference": "DMT" + secrets.token_hex(5).upper(),
           "customer_name": "Fatima Al-Sabah", "email": "fatima@example.com", "phone": "+96555123456",
           "governorate": "hawalli", "area": "salmiya", "block": "10", "street": "Salem Al-Mubarak St",
           "building": "12A", "provider": "checkout", "total_fils": 8_250, **values}
    return run(Order.insert(Order(**row)).returning(*Order.all_columns()))[0]


def test_orders_csv_download(staff_client) -> None:
    order = insert_order(created_at=datetime(2016, 4, 5, 23, 59, tzinfo=KUWAIT_TIME), customer_name="نورة العتيبي")
    response = staff_client(Role.FINANCE).get(ORDERS_CSV)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="orders-2016-04-04-to-2016-04-05.csv"'
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8").removeprefix("\ufeff"))))
    assert rows[0][0] == "Reference" and len(rows) == 2
    assert rows[1][:4] == [order["reference"], "2016-04-05 23:59:00", "pending_payment", "نورة العتيبي"]
    assert rows[1][8] == "8.250"


def test_reconciliation_csv_download_for_an_empty_day(staff_client) -> None:
    response = staff_client(Role.OWNER).get("/staff/reports/reconciliation.csv?date=2002-02-02")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="reconciliation-2002-02-02.csv"'
    lines = response.content.decode("utf-8").removeprefix("\ufeff").splitlines()
    assert len(lines) == 1 and lines[0].startswith("Provider,KNET post date,KNET payment ID,Track ID")


@pytest.mark.parametrize(("path", "message"), [
    ("/staff/reports/orders.csv?from=2026-02-30&to=2026-03-01", "The start date must be a date written as YYYY-MM-DD."),
    ("/staff/reports/orders.csv?from=2026-01-01&to=soon", "The end date must be a date written as YYYY-MM-DD."),
    ("/staff/reports/orders.csv?from=2026-03-02&to=2026-03-01", "The start date is after the end date."),
    ("/staff/reports/orders.csv?from=2020-01-01&to=2026-01-01", "Choose a range of at most 366 days."),
    ("/staff/reports/reconciliation.csv?date=%3DSUM(A1)", "The date must be a date written as YYYY-MM-DD."),
])
def test_bad_dates_are_a_400_with_a_message(staff_client, path: str, message: str) -> None:
    client = staff_client(Role.FINANCE)
    response = client.get(path)
    assert response.status_code == 400 and message in response.text
    assert "content-disposition" not in response.headers
    arabic = client.get(path + "&lang=ar")
    assert arabic.status_code == 400 and 'dir="rtl"' in arabic.text and 'lang="ar"' in arabic.text


def test_dashboard_in_both_languages(staff_client) -> None:
    client = staff_client(Role.FINANCE)
    english = client.get("/staff/reports")
    assert english.status_code == 200
    for metric in ("sales-today", "sales-30-days", "failure-rate"):
        assert f'data-metric="{metric}"' in english.text
    assert 'data-state="pending_payment"' in english.text and 'data-state="refunded"' in english.text
    assert english.text.count('class="chart-bar') == 30
    assert re.search(r'<svg class="sales-chart"[^>]*role="img" aria-labelledby="sales-chart-title sales-chart-desc"',
                     english.text)
    assert '<title id="sales-chart-title">' in english.text and '<desc id="sales-chart-desc">' in english.text
    assert 'action="/staff/reports/orders.csv"' in english.text and 'action="/staff/reports/reconciliation.csv"' in english.text
    assert " style=" not in english.text and "<script>" not in english.text  # strict CSP: no inline styles or scripts

    arabic = client.get("/staff/reports?lang=ar")
    assert arabic.status_code == 200 and 'dir="rtl"' in arabic.text
    bars = [float(x) for x in re.findall(r'class="chart-bar[^"]*" x="([\d.]+)"', arabic.text)]
    assert len(bars) == 30 and bars == sorted(bars, reverse=True)  # time runs right to left
