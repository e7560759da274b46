"""HEAD is answered as the GET it asks about, with no body, whatever server runs the shop."""
from __future__ import annotations

from typing import Any

from shop.web.middleware import head_as_get


async def test_head_keeps_the_gets_status_and_headers_and_sends_no_body() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    original = {"type": "http", "method": "HEAD", "path": "/products"}
    scope, send_head = head_as_get(original, send)
    assert scope["method"] == "GET" and scope["path"] == "/products"
    assert original["method"] == "HEAD"  # the server's own scope is left as it was

    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]}
    await send_head(start)
    await send_head({"type": "http.response.body", "body": b"abc", "more_body": True})
    await send_head({"type": "http.response.body", "body": b"defghi", "more_body": False})
    assert sent == [start, {"type": "http.response.body", "body": b"", "more_body": False}]
