"""Every error becomes a page (or an htmx fragment) in the customer's language; never a trace."""
from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from shop import i18n
from shop.i18n import gettext as _

log = logging.getLogger("shop.errors")


class UserError(HTTPException):
    """A request we understood but refuse, with a message meant for the customer."""

    status_code = 422


def _explanation(status: int, detail: str) -> tuple[str, str]:
    """Translated title and message; Litestar's own details are English and too technical."""
    if status == 404:
        return _("Page not found"), _("We could not find what you were looking for.")
    if status == 403 and "csrf" in detail.lower():
        return _("Form expired"), _(
            "Your form was sent without a valid security token. Reload the page and try again."
        )
    if status == 403 or status == 401:
        return _("Not allowed"), _("You are not allowed to do that.")
    if status == 405:
        return _("Not allowed"), _("This address does not accept that kind of request.")
    if status == 413:
        return _("Too large"), _("What you sent is larger than we accept.")
    if status == 429:
        return _("Too many attempts"), _("Please wait a little and try again.")
    if status >= 500:
        return _("Something went wrong"), _(
            "We could not complete your request. Nothing was charged; please try again in a moment."
        )
    return _("Request not understood"), _("Some of what was sent is not valid. Please check it and try again.")


def render_error(request: Request, status: int, detail: str = "", message: str | None = None) -> Response:
    # Unknown paths never pass through the route middleware that sets the language.
    from shop.web.middleware import language_from_scope

    i18n.current_language.set(language_from_scope(request.scope))
    title, explanation = _explanation(status, detail)
    context = {
        "status": status,
        "title": title,
        "message": message or explanation,
        "path": request.url.path,
        "query_params": {},
    }
    if request.headers.get("hx-request") == "true":
        # htmx swaps it into the page's message area instead of the target it asked for.
        return Template(
            "_partials/_error.html",
            context=context,
            status_code=status,
            headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
        )
    return Template("errors/error.html", context=context, status_code=status)


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    message = exc.detail if isinstance(exc, UserError) else None
    return render_error(request, exc.status_code, str(exc.detail or ""), message)


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return render_error(request, HTTP_500_INTERNAL_SERVER_ERROR)


EXCEPTION_HANDLERS = {HTTPException: http_exception_handler, Exception: internal_error_handler}
