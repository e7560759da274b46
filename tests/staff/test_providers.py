"""Staff provider settings: owners only, capabilities and credential states without a single
secret value, choosing the active provider (audited; refusals explained), broken adapters tolerated."""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

import httpx
import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.payments.registry import ADAPTERS, offline_provider
from shop.payments.tables import ShopSetting
from shop.settings import SANDBOX_CREDENTIALS, Settings
from shop.staff.auth import Role
from shop.staff.providers import provider_overview, refusal_message
from shop.staff.tables import AuditLog
from tests.staff.conftest import csrf, sign_in
from tests.support import counting_ca_bundle_loads, run_async
from tests.web.conftest import run

HTMX = {"HX-Request": "true"}
LIVE_SECRET = "sk_live_this_must_never_be_shown_0123456789"
BROKEN = "shop.payments.providers.not_written_yet:Nope"


@pytest.fixture(autouse=True)
def two_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the two Checkout.com adapters, plus one whose module does not exist (yet): other
    providers are being written right now and must not decide whether this page works."""
    for slug in list(ADAPTERS):
        if slug not in ("checkout", "checkout_setup"):
            monkeypatch.delitem(ADAPTERS, slug)
    monkeypatch.setitem(ADAPTERS, "unwritten", BROKEN)


@pytest.fixture()
def keep_choice(client: TestClient) -> Iterator[None]:
    """The storefront tests share this database: start from the default (no choice stored) and
    put the merchant's choice back afterwards."""
    saved = run(ShopSetting.select())
    run(ShopSetting.delete(force=True))
    yield
    run(ShopSetting.delete(force=True))
    if saved:
        run(ShopSetting.insert(*[ShopSetting(**{k: v for k, v in row.items() if k != "id"}) for row in saved]))


def signed_in(settings: Settings, role: Role = Role.OWNER) -> TestClient:
    client = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000")
    client.__enter__()
    sign_in(client, role)
    return client


@pytest.fixture(scope="module")
def owner_client(settings: Settings) -> Iterator[TestClient]:
    """One owner per backend for the module (signing in hashes with argon2, slow on purpose)."""
    client = signed_in(settings)
    yield client
    client.__exit__(None, None, None)


@pytest.fixture()
def owner(owner_client: TestClient, keep_choice: None) -> TestClient:
    return owner_client


def choose(client: TestClient, slug: str, htmx: bool = True) -> httpx.Response:
    if htmx:
        return client.post("/staff/providers/active", data={"provider": slug},
                           headers={**HTMX, "x-csrftoken": csrf(client)}, follow_redirects=False)
    return client.post("/staff/providers/active", data={"provider": slug, "_csrf_token": csrf(client)},
                       follow_redirects=False)


def card(html: str, slug: str) -> str:
    match = re.search(rf'<article [^>]*data-provider="{slug}".*?</article>', html, re.S)
    assert match, f"no card for {slug}"
    return match.group(0)


def audits() -> list[dict[str, Any]]:
    return run(AuditLog.select().where(AuditLog.action == "provider.activate").order_by(AuditLog.id))


# --- without HTTP ---

def test_the_overview_names_settings_and_states_but_never_values(settings: Settings, keep_choice) -> None:
    live = settings.with_(provider_settings={"SHOP_CHECKOUT_SECRET_KEY": LIVE_SECRET})

    async def overview(s: Settings):
        async with httpx.AsyncClient() as client:
            return await provider_overview(s, client)

    views = {v.slug: v for v in run_async(lambda: overview(live))}
    assert list(views) == ["checkout", "checkout_setup", "unwritten"]
    assert views["unwritten"].available is False and not views["unwritten"].ready
    checkout = views["checkout"]
    assert checkout.available and checkout.ready and checkout.capabilities.refunds
    states = dict(checkout.settings)
    assert states["SHOP_CHECKOUT_SECRET_KEY"] == "set"
    assert states["SHOP_CHECKOUT_WEBHOOK_SECRET"] == "sandbox" and states["SHOP_CHECKOUT_API_URL"] == "sandbox"
    assert LIVE_SECRET not in repr(views) and SANDBOX_CREDENTIALS["CHECKOUT_WEBHOOK_SECRET"] not in repr(views)

    bare = settings.with_(sandbox=False)
    views = {v.slug: v for v in run_async(lambda: overview(bare))}
    assert dict(views["checkout"].settings)["SHOP_CHECKOUT_SECRET_KEY"] == "missing"
    assert "SHOP_CHECKOUT_API_URL" in views["checkout"].problems and not views["checkout"].ready
    assert "SHOP_CHECKOUT_SECRET_KEY" in refusal_message("checkout", bare)


# --- over HTTP ---

@pytest.mark.parametrize("role", [Role.OPERATIONS, Role.FINANCE])
def test_only_owners_see_or_change_providers(staff_client, keep_choice, role: Role) -> None:
    client = staff_client(role)
    before = len(audits())
    assert client.get("/staff/providers").status_code == 403
    assert choose(client, "checkout_setup").status_code == 403
    assert len(audits()) == before and run(ShopSetting.count()) == 0


def test_the_page_shows_capabilities_and_states_and_no_secret(settings: Settings, keep_choice) -> None:
    client = signed_in(settings.with_(provider_settings={"SHOP_CHECKOUT_SECRET_KEY": LIVE_SECRET}))
    try:
        page = client.get("/staff/providers")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert 'data-active-provider="checkout"' in page.text
        checkout = card(page.text, "checkout")
        assert 'data-setting="SHOP_CHECKOUT_SECRET_KEY" data-state="set"' in checkout
        assert 'data-setting="SHOP_CHECKOUT_WEBHOOK_SECRET" data-state="sandbox"' in checkout
        assert "Partial refunds" in checkout and 'data-active="true"' in checkout
        assert "not available" in card(page.text, "unwritten")
        for secret in (LIVE_SECRET, *SANDBOX_CREDENTIALS.values()):
            assert secret not in page.text
        arabic = client.get("/staff/providers", params={"lang": "ar"})
        assert arabic.status_code == 200 and '<html lang="ar" dir="rtl">' in arabic.text
    finally:
        client.__exit__(None, None, None)


def test_choosing_a_provider_swaps_the_panel_and_is_audited(owner: TestClient, client: TestClient) -> None:
    before = len(audits())
    response = choose(owner, "checkout_setup")
    assert response.status_code == 200 and 'data-active-provider="checkout_setup"' in response.text
    assert run(ShopSetting.select().where(ShopSetting.key == "active_provider").first())["value"] == "checkout_setup"
    entry = audits()[-1]
    assert len(audits()) == before + 1 and entry["staff_email"].startswith("owner-")
    assert json.loads(entry["before"]) == {"provider": "checkout"}
    assert json.loads(entry["after"]) == {"provider": "checkout_setup"}
    back = choose(owner, "checkout", htmx=False)  # without htmx: back to the page with a message
    assert back.status_code == 303 and back.headers["location"] == "/staff/providers"
    assert 'data-active-provider="checkout"' in owner.get("/staff/providers").text


def test_the_page_and_a_choice_load_no_certificates(owner: TestClient) -> None:
    """Asking adapters about their settings sends nothing, so it must not build an HTTPS client:
    each one loaded the CA bundle, 40 ms of the worker's event loop, for every adapter on every
    view of this page, while the storefront's customers on that worker waited."""
    with counting_ca_bundle_loads() as loads:
        assert owner.get("/staff/providers").status_code == 200
        assert choose(owner, "checkout_setup").status_code == 200
        assert choose(owner, "nope").status_code == 422
        assert loads == []
        httpx.AsyncClient()  # what each adapter was given before: the spy sees its bundle loaded
        assert len(loads) == 1


def test_an_adapter_asked_about_its_settings_cannot_send(settings: Settings) -> None:
    provider = offline_provider("checkout", settings)
    with pytest.raises(RuntimeError, match="sent GET"):
        run_async(lambda: provider.client.get("https://api.sandbox.checkout.com/"))


def test_unknown_or_broken_providers_are_refused_with_a_message(owner: TestClient) -> None:
    before = len(audits())
    for slug in ("paypal", "", "unwritten", "x" * 500):
        response = choose(owner, slug)
        assert response.status_code == 422 and "flash-error" in response.text, slug
        assert 'data-active-provider="checkout"' in response.text, slug
    assert len(audits()) == before and run(ShopSetting.count()) == 0


def test_an_unconfigured_provider_is_refused_naming_what_is_missing(settings: Settings, keep_choice) -> None:
    client = signed_in(settings.with_(sandbox=False))
    try:
        before = len(audits())
        response = choose(client, "checkout_setup")
        assert response.status_code == 422 and "SHOP_CHECKOUT_SECRET_KEY" in response.text
        assert run(ShopSetting.count().where(ShopSetting.value == "checkout_setup")) == 0 and len(audits()) == before
        assert 'data-state="missing"' in client.get("/staff/providers").text
    finally:
        client.__exit__(None, None, None)


def test_a_forged_choice_is_refused(owner: TestClient) -> None:
    response = owner.post("/staff/providers/active", data={"provider": "checkout_setup"}, follow_redirects=False)
    assert response.status_code == 403
    assert run(ShopSetting.count().where(ShopSetting.value == "checkout_setup")) == 0
