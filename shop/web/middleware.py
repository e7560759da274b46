"""Pure ASGI middleware: HEAD answered as GET, the request's language, body limits, the CSRF
check, and security headers on every response."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from shop import i18n

ONE_YEAR_S = 365 * 24 * 3600


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class LanguageMiddleware:
    """Sets `i18n.current_language` for the request; `?lang=` is remembered in a cookie."""

    def __init__(self, app: ASGIApp, secure_cookie: bool = False) -> None:
        self.app = app
        self.secure_cookie = secure_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        language = language_from_scope(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang", [None])[0]
        token = i18n.current_language.set(language)
        scope.setdefault("state", {})["language"] = language
        remember = query in i18n.LANGUAGES

        async def send_with_cookie(message: Message) -> None:
            if remember and message["type"] == "http.response.start":
                cookie = f"{i18n.LANGUAGE_COOKIE}={language}; Path=/; Max-Age={ONE_YEAR_S}; SameSite=Lax"
                if self.secure_cookie:
                    cookie += "; Secure"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            i18n.current_language.reset(token)


def head_as_get(scope: Scope, send: Send) -> tuple[Scope, Send]:
    """A HEAD request as the GET it asks about, answered with the GET's status and headers
    (its Content-Length included) and no body. Every server must answer HEAD wherever it answers
    GET (RFC 9110, 9.3.2); Litestar answers only routes that declare it, so uptime monitors and
    link checkers got a 405 for every page."""

    async def send_without_body(message: Message) -> None:
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send(message)

    return {**scope, "method": "GET"}, send_without_body


class RequestLimitsMiddleware:
    """Refuses, before anything runs, what no handler could use:
    - a declared body larger than the route accepts (413). Litestar checks the limit only when a
      handler reads the body, so a guard or an unknown provider would otherwise answer first;
    - a NUL byte in the path or query (400): PostgreSQL text cannot hold one and the file system
      refuses it, so it could only end as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
                raise HTTPException(status_code=400, detail="NUL byte in the address")
            handler = scope.get("route_handler")
            declared = _header(scope, b"content-length")
            if handler is not None and declared and declared.isdigit():
                limit = handler.resolve_request_max_body_size()
                if limit and int(declared) > limit:
                    raise HTTPException(status_code=413, detail="request body too large")
        await self.app(scope, receive, send)


def servable_file(connection: Any, _handler: Any) -> None:
    """Guard of the static and media routes: a name no file can have (a NUL byte, a part over
    255 bytes) is not found, instead of an OS error (a 500)."""
    path = connection.scope["path"]
    if "\x00" in path or any(len(part.encode()) > 255 for part in path.split("/")):
        raise NotFoundException()


class StrictCSRFMiddleware(CSRFMiddleware):
    """Litestar's CSRF check, refusing (403) instead of failing (500) on a token that is not plain
    ASCII text: compare_digest raises on non-ASCII strings, and a form file is no token."""

    def _csrf_tokens_match(self, request_csrf_token: Any, cookie_csrf_token: Any) -> bool:
        if not all(isinstance(t, str) and t.isascii() for t in (request_csrf_token, cookie_csrf_token)):
            return False
        return super()._csrf_tokens_match(request_csrf_token, cookie_csrf_token)


def security_headers(production: bool) -> list[tuple[bytes, bytes]]:
    # No inline script or style anywhere, so the policy needs neither unsafe-inline nor eval.
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "frame-ancestors 'none'"
    )
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if production:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


def security_headers_hook(production: bool):
    """A before-send hook: it sees every response, 404s for unknown paths included."""
    headers = security_headers(production)
    names = {name for name, _ in headers}

    async def add_security_headers(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            if scope.get("path", "").startswith("/staff"):
                # Staff pages hold customer data: never kept by a browser or a proxy.
                kept = [(k, v) for k, v in kept if k.lower() != b"cache-control"] + [(b"cache-control", b"no-store")]
            message["headers"] = [*kept, *headers]

    return add_security_headers


def language_from_scope(scope: Scope) -> str:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang", [None])[0]
    remembered = _cookie(_header(scope, b"cookie") or "", i18n.LANGUAGE_COOKIE)
    return i18n.pick_language(query, remembered, _header(scope, b"accept-language"))


def _cookie(header: str, name: str) -> str | None:
    """One cookie's value. SimpleCookie parsed the whole header (session and CSRF token too) with
    its regular expressions: 4% of a page's CPU, for a value `pick_language` checks anyway."""
    for pair in header.split(";"):
        key, equals, value = pair.partition("=")
        if equals and key.strip() == name:
            return value.strip().strip('"')
    return None
