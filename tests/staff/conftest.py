"""Staff test fixtures: a signed-in client per role, and orders in every state to act on."""
from __future__ import annotations

import secrets
from typing import Any, Callable, Iterator

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.settings import Settings
from shop.staff.auth import Role, create_staff
from tests.conftest import BACKENDS, migrated_database, test_settings
from tests.support import CSRF_FIELD
from tests.web.conftest import db_snapshot, product, run  # noqa: F401 (fixtures shared with tests/web)

PASSWORD = "staff password for tests"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Its own database: staff tests add products and orders the storefront tests must not see."""
    yield from migrated_database(request, tmp_path_factory)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """Overridden with `database_url`, so no cached storefront settings leak in."""
    return test_settings(database_url)


def sign_in(client: TestClient, role: Role) -> dict[str, Any]:
    user = run(create_staff(f"{role.value}-{secrets.token_hex(4)}@example.com", PASSWORD, role))
    token = CSRF_FIELD.search(client.get("/staff/login").text).group(1)
    response = client.post("/staff/login", data={"email": user["email"], "password": PASSWORD, "_csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return user


def csrf(client: TestClient) -> str:
    """The CSRF token of this client's session (any page carries it)."""
    return CSRF_FIELD.search(client.get("/staff/login", follow_redirects=True).text).group(1)


@pytest.fixture()
def staff_client(settings: Settings) -> Iterator[Callable[[Role], TestClient]]:
    """`staff_client(Role.FINANCE)` -> a client signed in with a new account of that role."""
    clients: list[TestClient] = []

    def make(role: Role) -> TestClient:
        client = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000")
        client.__enter__()
        clients.append(client)
        sign_in(client, role)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
