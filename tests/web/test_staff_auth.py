"""Staff sign-in: argon2id, throttling that reveals nothing, sessions that logout and idleness end."""
import asyncio
import re
import threading
from datetime import timedelta

import pytest

from shop.catalog.tables import Product
from shop.staff.auth import Role, create_staff, utcnow
from shop.staff.tables import AuditLog, StaffSession, StaffUser
from tests.support import CSRF_FIELD, run_async
from tests.web.conftest import run

PASSWORD = "correct horse battery"


@pytest.fixture()
def owner(client) -> dict:
    import secrets

    return run(create_staff(f"owner-{secrets.token_hex(4)}@example.com", PASSWORD, Role.OWNER))


def sign_in(client, email: str, password: str = PASSWORD, next_path: str = ""):
    page = client.get("/staff/login")
    token = CSRF_FIELD.search(page.text).group(1)
    return client.post("/staff/login", data={"email": email, "password": password, "next": next_path,
                                             "_csrf_token": token}, follow_redirects=False)


def test_staff_pages_send_anonymous_visitors_to_sign_in(client) -> None:
    response = client.get("/staff", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login?next=/staff"
    assert response.headers["cache-control"] == "no-store"
    htmx = client.get("/staff", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/staff/login")


def test_passwords_are_argon2id_hashes(owner) -> None:
    stored = run(StaffUser.select(StaffUser.password_hash).where(StaffUser.id == owner["id"]).first())
    assert stored["password_hash"].startswith("$argon2id$") and PASSWORD not in stored["password_hash"]


def test_short_passwords_are_refused() -> None:
    from shop.staff.auth import PasswordTooWeak

    with pytest.raises(PasswordTooWeak):
        run(create_staff("short@example.com", "elevenchars", Role.FINANCE))


def test_a_password_check_leaves_the_storefront_serving(owner, monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 takes about 140 ms a check: in the event loop, each sign-in attempt stalled every
    customer of that worker. The check is held here until the loop has answered a storefront
    query; had it run in the loop, nothing could answer and it would never be let go."""
    from shop.staff import auth

    under_way, let_go = threading.Event(), threading.Event()
    check = auth._verify

    def held_check(password_hash: str | None, password: str) -> bool:
        under_way.set()
        assert let_go.wait(10), "the event loop was held by the password check"
        return check(password_hash, password)

    monkeypatch.setattr(auth, "_verify", held_check)

    async def signing_in_while_shopping():
        signing_in = asyncio.create_task(auth.log_in(owner["email"], PASSWORD, "192.0.2.7"))
        while not under_way.is_set():
            await asyncio.sleep(0.005)
        products = await asyncio.wait_for(Product.count(), 5)
        still_checking = not signing_in.done()
        let_go.set()
        staff, token = await signing_in
        return products, still_checking, staff, token

    products, still_checking, staff, token = run_async(signing_in_while_shopping)
    assert still_checking and products >= 0 and staff.email == owner["email"] and token


def test_a_new_password_is_hashed_off_the_event_loop(client, monkeypatch: pytest.MonkeyPatch) -> None:
    from shop.staff import auth

    threads: list[str] = []
    hash_password = auth.hash_password
    monkeypatch.setattr(auth, "hash_password",
                        lambda password: threads.append(threading.current_thread().name) or hash_password(password))
    run(create_staff(f"hashed-aside-{threading.get_ident()}@example.com", PASSWORD, Role.FINANCE))
    assert len(threads) == 1 and threads[0].startswith("argon2")


def test_sign_in_rotates_the_session_and_sign_out_ends_it(client, owner) -> None:
    before = client.cookies.get("session")
    response = sign_in(client, owner["email"], next_path="/staff/orders")
    assert response.status_code == 303 and response.headers["location"] == "/staff/orders"
    after = client.cookies.get("session")
    assert after and after != before
    stolen_cookie = after
    page = client.get("/staff/login", follow_redirects=False)
    assert page.status_code == 303  # already signed in
    token = CSRF_FIELD.search(client.get("/").text).group(1)
    out = client.post("/staff/logout", data={"_csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    # The old cookie is useless now: the session row is ended on the server.
    client.cookies.set("session", stolen_cookie)
    assert client.get("/staff", follow_redirects=False).headers["location"].startswith("/staff/login")
    actions = [r["action"] for r in run(AuditLog.select(AuditLog.action).where(AuditLog.staff == owner["id"]))]
    assert actions == ["staff.login", "staff.logout"]


def test_wrong_password_and_unknown_account_look_the_same(client, owner) -> None:
    wrong = sign_in(client, owner["email"], "wrong password!!")
    unknown = sign_in(client, "nobody-" + owner["email"], "wrong password!!")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda html: re.sub(r'value="[^"]*"', "", html)
    assert strip(wrong.text) == strip(unknown.text)


def test_repeated_failures_lock_the_account_even_with_the_right_password(client, owner) -> None:
    for _ in range(5):
        assert sign_in(client, owner["email"], "wrong password!!").status_code == 401
    assert sign_in(client, owner["email"]).status_code == 401


def test_idle_sessions_end(client, owner) -> None:
    sign_in(client, owner["email"])
    run(StaffSession.update({StaffSession.last_seen_at: utcnow() - timedelta(hours=1)}).where(
        StaffSession.staff == owner["id"]))
    assert client.get("/staff", follow_redirects=False).headers["location"].startswith("/staff/login")


def test_open_redirects_are_refused(client, owner) -> None:
    for target in ["https://evil.example/", "//evil.example/", "/\\evil.example"]:
        client.cookies.clear()
        assert sign_in(client, owner["email"], next_path=target).headers["location"] == "/staff/orders"


def test_createstaff_command(database_url) -> None:
    import subprocess
    import sys

    from tests.support import ROOT, shop_env

    result = subprocess.run([sys.executable, "-m", "shop", "createstaff", "cli@example.com", "--role", "finance",
                             "--password-stdin"], input="a long enough password\n", capture_output=True, text=True,
                            cwd=ROOT, env=shop_env(database_url), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "cli@example.com (finance)" in result.stdout
    weak = subprocess.run([sys.executable, "-m", "shop", "createstaff", "weak@example.com", "--password-stdin"],
                          input="short\n", capture_output=True, text=True, cwd=ROOT, env=shop_env(database_url),
                          timeout=60)
    assert weak.returncode == 2 and "12" in weak.stderr
