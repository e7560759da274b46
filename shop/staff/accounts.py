"""Staff accounts, for owners: list, create with a role and an initial password, change role, deactivate.

An owner cannot demote or deactivate themself, and the shop always keeps one active owner, also
when two owners act on each other at once. Every change is audited (never the password)."""
from __future__ import annotations

import re
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException

from shop.db import is_postgres, is_unique_violation, write_transaction
from shop.i18n import gettext as _
from shop.staff.audit import audit
from shop.staff.auth import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Role,
    Staff,
    create_staff,
    normalise_email,
    utcnow,
)
from shop.staff.guards import current_staff, roles
from shop.staff.pages import staff_template
from shop.clock import kuwait_time_text
from shop.staff.tables import StaffSession, StaffUser
from shop.web.pages import RowId, flash, is_htmx, see_other

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ACCOUNT_COLUMNS = (StaffUser.id, StaffUser.email, StaffUser.role, StaffUser.active, StaffUser.created_at,
                   StaffUser.last_login_at)


class AccountError(ValueError):
    """The change is refused; `field` names the form field at fault ("" for the whole form)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class AccountNotFound(LookupError):
    """No staff account with that id."""


def role_labels() -> dict[str, str]:
    return {Role.OWNER.value: _("Owner"), Role.OPERATIONS.value: _("Operations"), Role.FINANCE.value: _("Finance")}


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise AccountError(_("Choose a role."), "role") from None


async def list_accounts() -> list[dict[str, Any]]:
    rows = await StaffUser.select(*ACCOUNT_COLUMNS).order_by(StaffUser.email)
    return [{**row, "last_login": kuwait_time_text(row["last_login_at"])} for row in rows]


async def create_account(actor: Staff, email: str, role_text: str, password: str) -> dict[str, Any]:
    """A new active account. Raises AccountError (bad email, role or password, or email taken)."""
    email = normalise_email(email)
    if not _EMAIL.match(email):
        raise AccountError(_("Enter an email address like name@example.com."), "email")
    role = _role(role_text)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(_("Use a password of at least %(count)s characters.", count=MIN_PASSWORD_LENGTH),
                           "password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(_("Use a password of at most %(count)s characters.", count=MAX_PASSWORD_LENGTH),
                           "password")
    taken = AccountError(_("An account with this email already exists."), "email")
    try:
        async with write_transaction(StaffUser._meta.db):
            # create_staff would reset an existing account's password: creating never does.
            if await StaffUser.exists().where(StaffUser.email == email):
                raise taken
            row = await create_staff(email, password, role)
            await audit(actor, "staff.create", "staff_user", row["id"],
                        after={"email": row["email"], "role": row["role"], "active": row["active"]})
    except AccountError:
        raise
    except Exception as exc:
        if is_unique_violation(exc):  # created by a concurrent request
            raise taken from None
        raise
    return row


async def update_account(actor: Staff, account_id: int, role_text: str | None, active: bool | None) -> dict[str, Any]:
    """Change an account's role and/or active flag; deactivating ends its sessions.

    Idempotent (no change, no audit row). Raises AccountNotFound, or AccountError for changing
    one's own role or activity, leaving no active owner, or an actor no longer an active owner."""
    engine = StaffUser._meta.db
    async with write_transaction(engine):
        owners = (StaffUser.role == Role.OWNER.value) & StaffUser.active.eq(True)
        query = StaffUser.select(StaffUser.id, StaffUser.email, StaffUser.role, StaffUser.active).where(
            StaffUser.id.is_in([account_id, actor.id]) | owners).order_by(StaffUser.id)
        if is_postgres(engine):
            # The target, the actor and every active owner, in id order: two owners demoting each
            # other at once queue here, and the second then sees the first's change.
            query = query.lock_rows()
        rows = {row["id"]: row for row in await query}
        me, target = rows.get(actor.id), rows.get(account_id)
        if me is None or not me["active"] or me["role"] != Role.OWNER.value:
            raise AccountError(_("Only an active owner can change staff accounts."))
        if target is None:
            raise AccountNotFound(account_id)
        new_role = _role(role_text) if role_text else Role(target["role"])
        new_active = target["active"] if active is None else active
        if new_role.value == target["role"] and new_active == target["active"]:
            return target
        if account_id == actor.id:
            raise AccountError(_("You cannot demote or deactivate your own account."))
        owners_left = sum(1 for row in rows.values()
                          if row["id"] != account_id and row["role"] == Role.OWNER.value and row["active"])
        if new_role == Role.OWNER and new_active:
            owners_left += 1
        if owners_left == 0:
            raise AccountError(_("The shop needs at least one active owner."))
        await StaffUser.update({StaffUser.role: new_role.value, StaffUser.active: new_active}).where(
            StaffUser.id == account_id)
        ended = 0
        if target["active"] and not new_active:
            ended = len(await StaffSession.update({StaffSession.ended_at: utcnow()}).where(
                (StaffSession.staff == account_id) & StaffSession.ended_at.is_null()).returning(StaffSession.id))
        await audit(actor, "staff.update", "staff_user", account_id,
                    before={"email": target["email"], "role": target["role"], "active": target["active"]},
                    after={"email": target["email"], "role": new_role.value, "active": new_active,
                           "sessions_ended": ended})
    return {**target, "role": new_role.value, "active": new_active}


def _flag(value: object) -> bool | None:
    text = str(value).strip().lower() if value is not None else ""
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    return None


class AccountsController(Controller):
    path = "/staff/accounts"

    async def _page(self, request: Request, status_code: int = 200, **context: Any) -> Response:
        context = {"errors": {}, "form": {}, "notice": "", "error": "", **context}
        return staff_template(request, "staff/accounts.html", "staff/_accounts.html", status_code=status_code,
                              accounts=await list_accounts(), role_labels=role_labels(), roles=list(Role),
                              min_password=MIN_PASSWORD_LENGTH, **context)

    def _done(self, request: Request, message: str) -> Response | None:
        """Without htmx: flash and redirect (post/redirect/get)."""
        if is_htmx(request):
            return None
        flash(request, message)
        return see_other("/staff/accounts")

    @get("/", name="staff-accounts", opt=roles())  # owners only
    async def accounts(self, request: Request) -> Response:
        return await self._page(request)

    @post("/", name="staff-account-create", opt=roles(), status_code=200)
    async def create(self, request: Request) -> Response:
        form = await request.form()
        email = str(form.get("email", ""))[:300]
        role = str(form.get("role", ""))[:20]
        try:
            row = await create_account(current_staff(request), email, role, str(form.get("password", "")))
        except AccountError as error:
            return await self._page(request, status_code=422, errors={error.field or "form": str(error)},
                                    form={"email": email, "role": role})
        message = _("Account %(email)s created.", email=row["email"])
        return self._done(request, message) or await self._page(request, notice=message)

    @post("/{account_id:int}", name="staff-account-update", opt=roles(), status_code=200)
    async def update(self, request: Request, account_id: RowId) -> Response:
        form = await request.form()
        role = str(form.get("role", ""))[:20] or None
        active = _flag(form.get("active")) if "active" in form else None
        try:
            if "active" in form and active is None:
                raise AccountError(_("Choose active or deactivated."), "active")
            row = await update_account(current_staff(request), account_id, role, active)
        except AccountNotFound:
            raise NotFoundException("no such account") from None
        except AccountError as error:
            return await self._page(request, status_code=422, error=str(error))
        message = _("Account %(email)s saved.", email=row["email"])
        return self._done(request, message) or await self._page(request, notice=message)
