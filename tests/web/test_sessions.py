"""The session cookie is sent when the session changes or nears its expiry, not on every page:
the cart survives either way, and an expired session is not honoured."""
from __future__ import annotations

import time

import pytest

from shop.app import SESSION_MAX_AGE_S
from tests.support import post_form
from tests.web.test_cart import badge


def session_cookies_sent(response) -> list[str]:
    return [value for value in response.headers.get_list("set-cookie") if value.startswith("session=")]


def test_a_page_view_that_changes_nothing_leaves_the_session_cookie_alone(client, product) -> None:
    added = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}, htmx=True)
    assert session_cookies_sent(added), "a new cart is a new session: its cookie is sent"
    for path in ("/products", f"/products/{product['slug']}", "/cart"):
        page = client.get(path)
        assert page.status_code == 200
        assert session_cookies_sent(page) == [], path
    assert badge(client.get("/cart").text) == 1


def test_a_changed_session_is_sent(client, product) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})  # flash message queued
    shown = client.get("/cart")
    assert "Added" in shown.text
    assert session_cookies_sent(shown), "the message was taken out of the session: the cookie must say so"
    assert "Added" not in client.get("/cart").text


def test_a_session_past_half_its_life_is_renewed(client, product, monkeypatch: pytest.MonkeyPatch) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}, htmx=True)
    later = time.time() + SESSION_MAX_AGE_S * 0.6
    monkeypatch.setattr(time, "time", lambda: later)
    renewed = client.get("/products")
    assert session_cookies_sent(renewed), "a visit in the second half of the session's life renews it"
    assert badge(renewed.text) == 1

    monkeypatch.setattr(time, "time", lambda: later + SESSION_MAX_AGE_S * 0.6)  # within the renewed life
    assert badge(client.get("/products").text) == 1


def test_an_expired_session_is_not_honoured(client, product, monkeypatch: pytest.MonkeyPatch) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}, htmx=True)
    # The server checks the expiry sealed in the cookie, whatever the browser keeps sending.
    sealed = client.cookies.get("session")
    later = time.time() + SESSION_MAX_AGE_S + 60
    monkeypatch.setattr(time, "time", lambda: later)
    client.cookies.clear()
    assert badge(client.get("/products", headers={"cookie": f"session={sealed}"}).text) == 0


def test_a_remembered_session_still_expires_and_each_request_gets_its_own_copy(
        client, product, monkeypatch: pytest.MonkeyPatch) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}, htmx=True)
    for _ in range(2):  # opened once, then remembered
        assert badge(client.get("/products").text) == 1
    # A flash message taken out of one request's session is gone from the next one's.
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
    assert "Added" in client.get("/cart").text
    assert "Added" not in client.get("/cart").text
    # The server checks the expiry sealed in the cookie, whatever the browser keeps sending.
    sealed = client.cookies.get("session")
    later = time.time() + SESSION_MAX_AGE_S + 60
    monkeypatch.setattr(time, "time", lambda: later)
    client.cookies.clear()
    assert badge(client.get("/products", headers={"cookie": f"session={sealed}"}).text) == 0
