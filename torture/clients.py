"""Browser-like clients for the security cases: customers, staff of each role, and the app's
own route table (read from the app, so a new route is swept without editing a case)."""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx

from shop.app import create_app
from shop.settings import Settings
from shop.staff.auth import Role
from shop.staff.guards import ALL_ROLES
from tests.support import CSRF_FIELD, TEST_SECRET, run_shop
from torture.harness import Shop

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PARAM = re.compile(r"\{([a-z_]+):([a-z]+)\}")
for noisy in ("httpx", "piccolo"):  # a line per request or engine would drown the figures
    logging.getLogger(noisy).setLevel(logging.WARNING)
_staff_accounts: dict[tuple[str, Role], tuple[str, str]] = {}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the template, e.g. /orders/{public_token:str}
    csrf: bool  # the CSRF check applies to this method and route
    roles: frozenset[Role] | None  # staff roles let in (owners always); None: no staff guard
    body_limit: int = 0  # bytes of request body the route accepts

    @property
    def params(self) -> list[tuple[str, str]]:
        return PARAM.findall(self.path)

    @property
    def staff(self) -> bool:
        return self.path.startswith("/staff")

    def concrete(self, **values: str) -> str:
        return PARAM.sub(lambda m: values.get(m.group(1), "1"), self.path)


def app_routes(shop: Shop) -> list[Route]:
    """Every (method, path) the shop answers, sandboxes included, as `shop serve` builds it."""
    settings = Settings(env="test", database_url=f"sqlite:///{shop.work_dir / 'routes.db'}", secret_key=TEST_SECRET,
                        sandbox=True, reconcile_interval_s=0)
    found = set()
    for route in create_app(settings).routes:
        for handler in getattr(route, "route_handlers", []):
            staff = route.path.startswith("/staff") and not handler.opt.get("public")
            roles = frozenset(handler.opt.get("roles", ALL_ROLES)) | {Role.OWNER} if staff else None
            for method in handler.http_methods - {"HEAD", "OPTIONS"}:
                csrf = method in STATE_CHANGING and not handler.opt.get("exclude_from_csrf")
                found.add(Route(method, route.path, csrf, roles, handler.resolve_request_max_body_size() or 0))
    return sorted(found, key=lambda r: (r.path, r.method))


def remember_secret(shop: Shop, value: str) -> None:
    """Secrets a case used (passwords, session cookies): the final scan must find none of them."""
    with (shop.work_dir / "used-secrets.txt").open("a", encoding="utf-8") as out:
        out.write(value + "\n")


def used_secrets(shop: Shop) -> set[str]:
    path: Path = shop.work_dir / "used-secrets.txt"
    return set(path.read_text(encoding="utf-8").split()) if path.exists() else set()


def browser(shop: Shop) -> httpx.Client:
    """A fresh client with its own cookie jar that does not follow redirects."""
    return httpx.Client(base_url=shop.base_url, timeout=30, follow_redirects=False)


def page_token(client: httpx.Client, path: str = "/products") -> str:
    """The CSRF token the page's forms carry (it also sets the pairing cookie)."""
    return CSRF_FIELD.search(client.get(path, follow_redirects=True).text).group(1)


def remember_cookies(shop: Shop, client: httpx.Client) -> None:
    for name in ("session", "csrftoken"):
        value = client.cookies.get(name)
        if value:
            remember_secret(shop, value)


def staff_client(shop: Shop, role: Role) -> httpx.Client:
    """A client signed in as a staff account of `role` (made once per shop by `shop createstaff`)."""
    key = (shop.base_url, role)
    if key not in _staff_accounts:
        email, password = f"torture-{role.value}-{secrets.token_hex(3)}@example.com", secrets.token_urlsafe(18)
        remember_secret(shop, password)
        if role is Role.OWNER:
            run_shop(shop.database_url, "createstaff", email, "--role", role.value, "--password-stdin",
                     input=password + "\n")
        else:  # the owner adds the others, as a shop would (quicker than a process each)
            owner = staff_client(shop, Role.OWNER)
            created = owner.post("/staff/accounts", data={"email": email, "password": password, "role": role.value,
                                                          "_csrf_token": page_token(owner, "/staff/accounts")})
            owner.close()
            if created.status_code not in (200, 303):
                raise RuntimeError(f"could not create a {role.value} account: {created.status_code}")
        _staff_accounts[key] = (email, password)
    email, password = _staff_accounts[key]
    client = browser(shop)
    signed_in = client.post("/staff/login", data={"email": email, "password": password,
                                                  "_csrf_token": page_token(client, "/staff/login")})
    if signed_in.status_code != 303:
        raise RuntimeError(f"staff sign-in as {role.value} refused: {signed_in.status_code}")
    remember_cookies(shop, client)
    return client


def active_provider(owner: httpx.Client) -> str:
    return re.search(r'data-active-provider="([a-z_]*)"', owner.get("/staff/providers").text).group(1)


def make_active(owner: httpx.Client, provider: str) -> None:
    response = owner.post("/staff/providers/active",
                          data={"provider": provider, "_csrf_token": page_token(owner, "/staff/providers")})
    if response.status_code != 303:
        raise RuntimeError(f"could not make {provider} active: {response.status_code}")


def new_product(owner: httpx.Client, name_en: str, name_ar: str, description: str = "", stock: int = 10_000,
                price: str = "1.250") -> tuple[int, str]:
    """A product made through the staff catalogue, active and in stock; returns (id, slug)."""
    page = owner.get("/staff/catalogue/products/new").text
    category = re.search(r'<option value="(\d+)"', page).group(1)
    slug = f"torture-{secrets.token_hex(5)}"
    created = owner.post("/staff/catalogue/products", data={
        "slug": slug, "category": category, "name_en": name_en, "name_ar": name_ar, "description_en": description,
        "description_ar": description, "price": price, "stock": str(stock), "active": "on",
        "_csrf_token": CSRF_FIELD.search(page).group(1)})
    if created.status_code != 303:
        raise RuntimeError(f"product not created: {created.status_code} {created.text[:300]}")
    return int(created.headers["location"].rstrip("/").rsplit("/", 1)[1]), slug


def place_order(customer: httpx.Client, product_id: int, details: dict[str, str] | None = None,
                quantity: int = 1) -> httpx.Response:
    """Put the product in the cart and press Pay; the shop's answer (a 303 or the provider form)."""
    from tests.unit.test_forms import VALID

    token = page_token(customer)
    customer.post("/cart/items", data={"product_id": str(product_id), "quantity": str(quantity), "_csrf_token": token})
    return customer.post("/checkout", data={**VALID, **(details or {}), "_csrf_token": token})
