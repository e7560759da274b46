"""Who may open a staff page: one guard, reading the roles each handler declares in `opt`."""
from __future__ import annotations

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect
from urllib.parse import quote

from shop.staff.auth import Role, Staff, staff_for_token

STAFF_SESSION_KEY = "staff"
ALL_ROLES = frozenset(Role)


class StaffLoginRequired(NotAuthorizedException):
    """No live staff session: send the browser to the login page."""


async def staff_of(connection: ASGIConnection) -> Staff | None:
    """The signed-in staff member (looked up once per request)."""
    state = connection.scope.setdefault("state", {})
    if "staff" not in state:
        token = connection.session.get(STAFF_SESSION_KEY) if connection.scope.get("session") is not None else None
        state["staff"] = await staff_for_token(token if isinstance(token, str) else None)
    return state["staff"]


async def staff_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every staff route: a live session, and one of the roles the handler lists (owner: all)."""
    if handler.opt.get("public"):
        return
    staff = await staff_of(connection)
    if staff is None:
        raise StaffLoginRequired()
    roles = handler.opt.get("roles", ALL_ROLES)
    if not staff.can(*roles):
        raise PermissionDeniedException("role not allowed")


def current_staff(request: Request) -> Staff:
    """For handlers behind the guard: the staff member it let through."""
    staff = request.scope.get("state", {}).get("staff")
    assert isinstance(staff, Staff), "staff_guard must run first"
    return staff


def roles(*allowed: Role) -> dict[str, object]:
    """`opt` for a handler: `@get(..., opt=roles(Role.FINANCE))` (owners are always allowed)."""
    return {"roles": frozenset(allowed)}


def login_redirect(request: Request, exc: StaffLoginRequired) -> Response:
    target = "/staff/login?next=" + quote(request.url.path, safe="/")
    if request.headers.get("hx-request") == "true":
        return Response(content=None, status_code=401, headers={"HX-Redirect": target})
    return Redirect(path=target, status_code=303)
