"""Staff sign-in and sign-out, and the staff home."""
from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Template

from shop.i18n import gettext as _
from shop.staff.audit import audit
from shop.staff.auth import LoginRefused, log_in, log_out
from shop.staff.guards import STAFF_SESSION_KEY, current_staff, staff_of
from shop.web.pages import see_other


def _safe_next(target: str | None) -> str:
    """Only a path inside the staff area: never an open redirect."""
    if target and target.startswith("/staff") and not target.startswith("//") and "\\" not in target:
        return target
    return "/staff/orders"


class StaffAuthController(Controller):
    path = "/staff"

    @get("/login", name="staff-login", opt={"public": True})
    async def login_form(self, request: Request, next: FromQuery[str] = "") -> Response:
        if await staff_of(request) is not None:
            return see_other(_safe_next(next))
        return Template("staff/login.html", context={"next": _safe_next(next), "error": "", "email": ""})

    @post("/login", name="staff-login-submit", opt={"public": True}, status_code=303)
    async def login(self, request: Request) -> Response:
        form = await request.form()
        email = str(form.get("email", ""))[:254]
        client = request.client.host if request.client else "unknown"
        try:
            staff, token = await log_in(email, str(form.get("password", "")), client)
        except LoginRefused:
            context = {"next": _safe_next(form.get("next")), "email": email,
                       "error": _("Wrong email or password, or too many attempts. Please wait and try again.")}
            return Template("staff/login.html", context=context, status_code=401)
        # A fresh session: nothing from before sign-in survives into the staff session.
        request.set_session({STAFF_SESSION_KEY: token})
        await audit(staff, "staff.login")
        return see_other(_safe_next(form.get("next")))

    @post("/logout", name="staff-logout", status_code=303)
    async def logout(self, request: Request) -> Response:
        staff = current_staff(request)
        await log_out(staff)
        await audit(staff, "staff.logout")
        request.clear_session()
        return see_other("/staff/login")

    @get("/", name="staff-home")
    async def home(self) -> Response:
        return see_other("/staff/orders")
