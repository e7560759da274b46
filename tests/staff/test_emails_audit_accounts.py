"""Customer emails, the audit log and staff accounts: roles, CSRF, audit rows, refusals that change nothing."""
from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.notifications.tables import OutboxEmail
from shop.settings import Settings
from shop.staff.accounts import AccountError, update_account
from shop.staff.auth import Role, Staff, create_staff
from shop.staff.tables import AuditLog, StaffSession, StaffUser
from tests.staff.conftest import PASSWORD, csrf, sign_in
from tests.support import CSRF_FIELD, run_async
from tests.web.conftest import run

HTMX = {"HX-Request": "true"}
NEW_PASSWORD = "initial password 12345"


@pytest.fixture(scope="module")
def staff_client(settings: Settings):
    """One signed-in client per role for this module (signing in hashes with argon2: slow on purpose)."""
    clients: dict[Role, TestClient] = {}

    def get(role: Role) -> TestClient:
        if role not in clients:
            clients[role] = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000").__enter__()
            sign_in(clients[role], role)
        clients[role].cookies.delete("lang")
        return clients[role]

    yield get
    for client in clients.values():
        client.__exit__(None, None, None)


@pytest.fixture()
def fresh_client(settings: Settings):
    """A separate browser signed in with a new account of `role`: (client, account row)."""
    made: list[TestClient] = []

    def make(role: Role) -> tuple[TestClient, dict[str, Any]]:
        client = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000").__enter__()
        made.append(client)
        return client, sign_in(client, role)

    yield make
    for client in made:
        client.__exit__(None, None, None)


def kept_receipt() -> dict[str, Any]:
    """A receipt kept in the outbox (no SMTP), inserted directly: the shared catalogue stays as it is."""
    tag = secrets.token_hex(4)
    rows = run(OutboxEmail.insert(OutboxEmail(
        kind="receipt", to_address=f"customer-{tag}@example.com", subject=f"Your receipt for order DMT{tag}",
        body_text="Thank you", status="kept", attempts=1,
    )).returning(*OutboxEmail.all_columns()))
    return rows[0]


def audit_rows(action: str, target_id: object) -> list[dict[str, Any]]:
    return run(AuditLog.select().where((AuditLog.action == action) & (AuditLog.target_id == str(target_id)))
               .order_by(AuditLog.id))


def email_row(email_id: int) -> dict[str, Any]:
    return run(OutboxEmail.select().where(OutboxEmail.id == email_id).first())


def as_dict(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else value


# ---------------------------------------------------------------- who may open what

PAGES = {"/staff/emails": {Role.OPERATIONS}, "/staff/audit": set(), "/staff/accounts": set()}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_sees_only_its_pages(staff_client, role: Role) -> None:
    client = staff_client(role)
    for path, roles in PAGES.items():
        allowed = role == Role.OWNER or role in roles
        assert client.get(path, follow_redirects=False).status_code == (200 if allowed else 403), path
    token = csrf(client)
    posts = {"/staff/emails/send": {Role.OPERATIONS}, "/staff/emails/999999999/resend": {Role.OPERATIONS},
             "/staff/accounts": set(), "/staff/accounts/999999999": set()}
    accounts = run(StaffUser.count())
    for path, roles in posts.items():
        if role == Role.OWNER or role in roles:
            continue
        response = client.post(path, data={"_csrf_token": token, "email": "x@example.com", "role": "owner",
                                           "password": NEW_PASSWORD}, follow_redirects=False)
        assert response.status_code == 403, path
    assert run(StaffUser.count()) == accounts


def test_anonymous_visitors_are_sent_to_sign_in(client) -> None:
    for path in PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == f"/staff/login?next={path}"
    token = CSRF_FIELD.search(client.get("/staff/login").text).group(1)
    response = client.post("/staff/accounts", data={"_csrf_token": token, "email": "anon@example.com",
                                                    "role": "owner", "password": NEW_PASSWORD}, follow_redirects=False)
    assert response.status_code == 303
    assert not run(StaffUser.exists().where(StaffUser.email == "anon@example.com"))


# ---------------------------------------------------------------- emails


def test_outbox_lists_and_filters_emails(staff_client) -> None:
    email = kept_receipt()
    client = staff_client(Role.OPERATIONS)
    page = client.get("/staff/emails?status=kept")
    assert page.status_code == 200 and f'id="email-{email["id"]}"' in page.text and email["subject"] in page.text
    assert f'id="email-{email["id"]}"' not in client.get("/staff/emails?status=sent").text
    fragment = client.get("/staff/emails?status=kept", headers=HTMX)
    assert fragment.status_code == 200 and "<html" not in fragment.text and f'id="email-{email["id"]}"' in fragment.text
    bad = client.get("/staff/emails?status=bogus")
    assert bad.status_code == 400 and "Unknown email status." in bad.text
    assert client.get("/staff/emails?page=0").status_code == 400
    arabic = client.get("/staff/emails?lang=ar")
    assert arabic.status_code == 200 and 'dir="rtl"' in arabic.text


def test_resend_requeues_the_email_once_and_is_audited(staff_client) -> None:
    email = kept_receipt()
    client = staff_client(Role.OPERATIONS)
    path = f"/staff/emails/{email['id']}/resend"
    assert client.post(path, headers=HTMX).status_code == 403  # no CSRF token
    assert email_row(email["id"])["status"] == "kept" and not audit_rows("email.resend", email["id"])

    token = csrf(client)
    response = client.post(path, headers={**HTMX, "x-csrftoken": token})
    assert response.status_code == 200 and response.text.lstrip().startswith(f'<tr id="email-{email["id"]}"')
    assert 'data-email-status="pending"' in response.text
    row = email_row(email["id"])
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, "")
    [entry] = audit_rows("email.resend", email["id"])
    assert as_dict(entry["before"])["status"] == "kept" and as_dict(entry["after"]) == {"status": "pending", "attempts": 0}
    assert entry["staff_email"].startswith("operations-")

    again = client.post(path, headers={**HTMX, "x-csrftoken": token})
    assert again.status_code == 409 and again.headers["hx-retarget"] == "#flash"
    assert "already waiting to be sent" in again.text and len(audit_rows("email.resend", email["id"])) == 1
    assert client.post("/staff/emails/999999999/resend", headers={**HTMX, "x-csrftoken": token}).status_code == 404

    # Send now: without SMTP the email is kept again, and the action is audited.
    before = run(AuditLog.count().where(AuditLog.action == "email.send_pending"))
    sent = client.post("/staff/emails/send", data={"_csrf_token": token, "status": "kept"}, headers=HTMX)
    assert sent.status_code == 200 and "No mail server is configured" in sent.text
    assert email_row(email["id"])["status"] == "kept"
    assert run(AuditLog.count().where(AuditLog.action == "email.send_pending")) == before + 1


def test_resend_without_javascript_redirects_with_a_message(staff_client) -> None:
    email = kept_receipt()
    client = staff_client(Role.OWNER)
    response = client.post(f"/staff/emails/{email['id']}/resend", data={"_csrf_token": csrf(client)},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/staff/emails"
    assert "is queued again" in client.get("/staff/emails").text


# ---------------------------------------------------------------- audit log


def test_audit_log_shows_who_did_what_readably_and_filters(staff_client) -> None:
    email = kept_receipt()
    operations = staff_client(Role.OPERATIONS)
    operations.post(f"/staff/emails/{email['id']}/resend", data={"_csrf_token": csrf(operations)})
    owner = staff_client(Role.OWNER)
    page = owner.get("/staff/audit?action=email.resend")
    assert page.status_code == 200
    assert 'data-action="email.resend"' in page.text and 'data-action="staff.login"' not in page.text
    assert f"outbox_email {email['id']}" in page.text
    assert '<tr class="audit-changed"><th scope="row"><code>status</code></th><td><code dir="ltr">kept</code></td>' \
           '<td><code dir="ltr">pending</code></td></tr>' in page.text
    by_staff = owner.get("/staff/audit?staff=OPERATIONS-", headers=HTMX)
    assert by_staff.status_code == 200 and "<html" not in by_staff.text
    assert "operations-" in by_staff.text and "finance-" not in by_staff.text
    assert owner.get("/staff/audit?page=abc").status_code == 400
    assert 'class="empty"' in owner.get("/staff/audit?action=no.such.action").text
    arabic = owner.get("/staff/audit?lang=ar")
    assert arabic.status_code == 200 and 'dir="rtl"' in arabic.text


# ---------------------------------------------------------------- staff accounts


def test_owner_creates_an_account_and_the_password_is_never_audited(staff_client) -> None:
    owner = staff_client(Role.OWNER)
    email = f"New-{secrets.token_hex(3)}@Example.com"
    token = csrf(owner)
    response = owner.post("/staff/accounts", data={"_csrf_token": token, "email": email, "role": "finance",
                                                   "password": NEW_PASSWORD}, headers=HTMX)
    assert response.status_code == 200 and f'data-account="{email.lower()}"' in response.text
    row = run(StaffUser.select().where(StaffUser.email == email.lower()).first())
    assert row["role"] == "finance" and row["active"] and row["password_hash"].startswith("$argon2id$")
    [entry] = audit_rows("staff.create", row["id"])
    assert as_dict(entry["after"]) == {"email": email.lower(), "role": "finance", "active": True}
    assert all(NEW_PASSWORD not in str(v) for v in entry.values())

    # The same email again: refused, and the existing password is not reset.
    again = owner.post("/staff/accounts", data={"_csrf_token": token, "email": email, "role": "owner",
                                                "password": "another password 123"}, headers=HTMX)
    assert again.status_code == 422 and "already exists" in again.text
    assert run(StaffUser.select(StaffUser.password_hash, StaffUser.role).where(StaffUser.id == row["id"]).first()) == \
        {"password_hash": row["password_hash"], "role": "finance"}


@pytest.mark.parametrize(("form", "message"), [
    ({"email": "weak@example.com", "role": "finance", "password": "elevenchars"}, "at least 12 characters"),
    ({"email": "not-an-email", "role": "finance", "password": NEW_PASSWORD}, "Enter an email address"),
    ({"email": "role@example.com", "role": "admin", "password": NEW_PASSWORD}, "Choose a role."),
])
def test_bad_new_accounts_are_refused_and_nothing_is_created(staff_client, form: dict, message: str) -> None:
    owner = staff_client(Role.OWNER)
    count = run(StaffUser.count())
    response = owner.post("/staff/accounts", data={"_csrf_token": csrf(owner), **form}, headers=HTMX)
    assert response.status_code == 422 and message in response.text and 'class="field-error"' in response.text
    full = owner.post("/staff/accounts?lang=ar", data={"_csrf_token": csrf(owner), **form})
    assert full.status_code == 422 and 'dir="rtl"' in full.text
    assert run(StaffUser.count()) == count


def test_deactivating_an_account_ends_its_sessions(staff_client, fresh_client) -> None:
    finance, account = fresh_client(Role.FINANCE)
    assert finance.get("/staff/reports").status_code == 200
    owner = staff_client(Role.OWNER)
    token = csrf(owner)
    response = owner.post(f"/staff/accounts/{account['id']}", data={"_csrf_token": token, "role": "operations",
                                                                     "active": "0"}, headers=HTMX)
    assert response.status_code == 200 and f'data-account="{account["email"]}" data-role="operations" ' \
                                          'data-active="false"' in response.text
    assert run(StaffSession.count().where((StaffSession.staff == account["id"]) & StaffSession.ended_at.is_null())) == 0
    assert finance.get("/staff/reports", follow_redirects=False).headers["location"].startswith("/staff/login")
    [entry] = audit_rows("staff.update", account["id"])
    assert as_dict(entry["before"]) == {"email": account["email"], "role": "finance", "active": True}
    assert as_dict(entry["after"]) == {"email": account["email"], "role": "operations", "active": False,
                                       "sessions_ended": 1}
    # Saving the same values again changes nothing and writes no audit row.
    owner.post(f"/staff/accounts/{account['id']}", data={"_csrf_token": token, "role": "operations", "active": "0"})
    assert len(audit_rows("staff.update", account["id"])) == 1
    bad = owner.post(f"/staff/accounts/{account['id']}", data={"_csrf_token": token, "active": "maybe"}, headers=HTMX)
    assert bad.status_code == 422
    assert owner.post("/staff/accounts/999999999", data={"_csrf_token": token, "role": "finance"},
                      headers=HTMX).status_code == 404


def test_an_owner_cannot_demote_or_deactivate_themself(fresh_client) -> None:
    owner, account = fresh_client(Role.OWNER)
    token = csrf(owner)
    for form in ({"role": "finance"}, {"active": "0"}):
        response = owner.post(f"/staff/accounts/{account['id']}", data={"_csrf_token": token, **form}, headers=HTMX)
        assert response.status_code == 422 and "your own account" in response.text
    row = run(StaffUser.select(StaffUser.role, StaffUser.active).where(StaffUser.id == account["id"]).first())
    assert row == {"role": "owner", "active": True} and not audit_rows("staff.update", account["id"])
    assert owner.get("/staff/accounts?lang=ar").status_code == 200


def test_two_owners_demoting_each_other_at_once_leave_one_owner(settings) -> None:
    async def race() -> list[Any]:
        users = [await create_staff(f"owner-race-{secrets.token_hex(4)}@example.com", PASSWORD, Role.OWNER)
                 for _ in range(2)]
        a, b = (Staff(u["id"], u["email"], Role.OWNER, 0) for u in users)
        results = await asyncio.gather(update_account(a, b.id, "finance", None), update_account(b, a.id, "finance", None),
                                       return_exceptions=True)
        roles = await StaffUser.select(StaffUser.role).where(StaffUser.id.is_in([a.id, b.id]))
        return [results, sorted(r["role"] for r in roles)]

    create_app(settings)  # binds the tables to this backend
    results, roles = run_async(race)
    assert roles == ["finance", "owner"]
    assert sorted(type(r).__name__ for r in results) == ["AccountError", "dict"]
    assert "Only an active owner" in str(next(r for r in results if isinstance(r, AccountError)))
