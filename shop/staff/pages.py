"""Rendering staff pages: the staff layout needs the staff member and the usual page bits."""
from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.response import Template

from shop.staff.auth import Role
from shop.staff.guards import current_staff
from shop.web.pages import flash, is_htmx, see_other, take_flashes


def staff_template(request: Request, page: str, fragment: str | None = None, status_code: int = 200,
                   **context: Any) -> Template:
    """The full page, or only `fragment` for an htmx request that asks for one."""
    staff = current_staff(request)
    context = {
        "staff": staff,
        "Role": Role,
        "flashes": take_flashes(request),
        "path": request.url.path,
        "query_params": dict(request.query_params),
        **context,
    }
    name = fragment if fragment and is_htmx(request) else page
    return Template(name, context=context, status_code=status_code)


def saved_or_none(request: Request, url: str, message: str) -> Response | None:
    """Without htmx: post/redirect/get with a flash. With htmx: None, the caller swaps a fragment."""
    if is_htmx(request):
        return None
    flash(request, message, "success")
    return see_other(url)


def created_response(request: Request, url: str, message: str) -> Response:
    flash(request, message, "success")
    if is_htmx(request):
        return Response(content=None, status_code=200, headers={"HX-Redirect": url})
    return see_other(url)
