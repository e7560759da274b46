"""Staff sign-in: argon2id, throttling that reveals nothing, sessions that logout and idleness end."""
import re
from datetime import timedelta

import pytest

from shop.staff.auth import Role, create_staff, utcnow
from shop.staff.tables import AuditLog, StaffSession, StaffUser
from tests.support import CSRF_FIELD
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
