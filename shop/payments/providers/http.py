"""The one way adapters talk HTTP: explicit timeouts, and failures sorted into two kinds."""
from __future__ import annotations

import json
from typing import Any, Mapping

import httpx

from shop.payments.providers.base import ProviderRejected, ProviderUnavailable


async def call_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    ok: tuple[int, ...] = (200, 201, 202),
) -> tuple[int, dict[str, Any]]:
    """Send a request and return (status, parsed JSON object).

    ProviderUnavailable: no answer, a 5xx, or an answer that is not the JSON object promised
    (an HTML error page with 200 included): the outcome is unknown, try again later.
    ProviderRejected: a 4xx, with the provider's words in the message."""
    content = None
    send_headers = {"Accept": "application/json", **(headers or {})}
    if json_body is not None:
        # Compact and exact: Decimal amounts must reach the wire as written, never via float.
        content = json.dumps(json_body, separators=(",", ":"), default=str).encode()
        send_headers["Content-Type"] = "application/json"
    try:
        response = await client.request(method, url, headers=send_headers, content=content, data=form)
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"{method} {url}: timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{method} {url}: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise ProviderUnavailable(f"{method} {url}: HTTP {response.status_code}")
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = None
    if response.status_code >= 400:
        detail = body if isinstance(body, dict) else response.text[:200]
        raise ProviderRejected(f"{method} {url}: HTTP {response.status_code} {detail}")
    if not isinstance(body, dict) or response.status_code not in ok:
        raise ProviderUnavailable(f"{method} {url}: unexpected answer (HTTP {response.status_code}, not JSON)")
    return response.status_code, body
