"""Every staff route, as anonymous, as a customer, and as each role: nobody gets in who should not.

The routes are read from the app itself, so a new staff page is swept without editing this."""
import re

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from shop.app import create_app
from shop.staff.auth import Role
from shop.staff.guards import ALL_ROLES
from tests.staff.conftest import csrf
from tests.support import post_form


def staff_routes(app: Litestar) -> list[tuple[str, str, frozenset[Role] | None]]:
    """(method, concrete path, roles allowed; None for public pages)."""
    found = []
    for route in app.routes:
        if not route.path.startswith("/staff"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if handler.opt.get("public"):
                allowed = None
            else:
                allowed = frozenset(handler.opt.get("roles", ALL_ROLES)) | {Role.OWNER}
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"}):
                found.append((method, path, allowed))
    return sorted(set(found), key=lambda r: (r[1], r[0]))


def send(client: TestClient, method: str, path: str):
    if method == "GET":
        return client.get(path, follow_redirects=False)
    return client.request(method, path, data={"_csrf_token": csrf(client)}, follow_redirects=False)


def test_the_sweep_sees_the_staff_routes(settings) -> None:
    routes = staff_routes(create_app(settings))
    assert ("POST", "/staff/logout", frozenset(ALL_ROLES)) in routes


def test_anonymous_visitors_and_customers_get_nothing(client, product, settings) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})  # a customer
    for method, path, allowed in staff_routes(create_app(settings)):
        if allowed is None:
            continue
        response = send(client, method, path)
        assert response.status_code in (303, 401), (method, path, response.status_code)
        if response.status_code == 303:
            assert response.headers["location"].startswith("/staff/login"), (method, path)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_only_its_routes(staff_client, settings, role: Role) -> None:
    client = staff_client(role)
    for method, path, allowed in staff_routes(create_app(settings)):
        if allowed is None or path == "/staff/logout":
            continue
        response = send(client, method, path)
        if role in allowed:
            assert response.status_code != 403, (role, method, path)
            assert not response.headers.get("location", "").startswith("/staff/login"), (role, method, path)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)
        assert response.headers.get("cache-control") == "no-store", (method, path)


@pytest.mark.parametrize("row_id", ["0", "2147483648", "9223372036854775808", "9" * 30])
def test_ids_no_row_can_have_are_4xx_not_500(staff_client, settings, row_id: str) -> None:
    """A number past the database's id range must not reach the driver (PostgreSQL's serial is
    32-bit; SQLite overflows past 64 bits)."""
    client = staff_client(Role.OWNER)
    for route in create_app(settings).routes:
        if ":int}" not in route.path:
            continue
        path = re.sub(r"\{[a-z_]+:int\}", row_id, route.path)
        for method in ("GET", "POST"):
            response = send(client, method, path)
            assert 400 <= response.status_code < 500, (method, path, response.status_code)
