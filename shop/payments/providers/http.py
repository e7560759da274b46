"""The one way adapters talk HTTP: explicit timeouts, and failures sorted into two kinds."""
from __future__ import annotations

import json
from decimal import Decimal
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
    exact_decimals: bool = False,
) -> tuple[int, dict[str, Any]]:
    """Send a request and return (status, parsed JSON object).

    ProviderUnavailable: no answer, a 5xx, or an answer that is not the JSON object promised
    (an HTML error page with 200 included): the outcome is unknown, try again later.
    ProviderRejected: a 4xx, with the provider's words in the message.

    `exact_decimals`: for providers that want amounts as JSON numbers in major units (Tap):
    Decimal values go on the wire as JSON numbers written digit for digit (`10.500`), and
    numbers with a fraction in the answer come back as Decimal, never float."""
    content = None
    send_headers = {"Accept": "application/json", **(headers or {})}
    if json_body is not None:
        # Compact and exact: Decimal amounts must reach the wire as written, never via float.
        content = (exact_json(json_body) if exact_decimals
                   else json.dumps(json_body, separators=(",", ":"), default=str).encode())
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
        body = (response.json(parse_float=Decimal) if exact_decimals else response.json()) if response.content else {}
    except ValueError:
        body = None
    if response.status_code >= 400:
        detail = body if isinstance(body, dict) else response.text[:200]
        raise ProviderRejected(f"{method} {url}: HTTP {response.status_code} {detail}")
    if not isinstance(body, dict) or response.status_code not in ok:
        raise ProviderUnavailable(f"{method} {url}: unexpected answer (HTTP {response.status_code}, not JSON)")
    return response.status_code, body


async def call_text(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    ok: tuple[int, ...] = (200,),
    max_bytes: int = 256 * 1024,
) -> tuple[int, str]:
    """Send a request whose answer is text (KNET's XML fragments); return (status, text).

    Failures are sorted as in `call_json`: ProviderUnavailable for no answer, a 5xx, another
    unexpected status, or an answer that is not UTF-8 text of at most `max_bytes`;
    ProviderRejected for a 4xx. The caller parses the text."""
    try:
        response = await client.request(method, url, headers=dict(headers or {}), content=content)
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"{method} {url}: timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{method} {url}: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise ProviderUnavailable(f"{method} {url}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise ProviderRejected(f"{method} {url}: HTTP {response.status_code} {response.text[:200]}")
    if response.status_code not in ok or len(response.content) > max_bytes:
        raise ProviderUnavailable(f"{method} {url}: unexpected answer (HTTP {response.status_code}, "
                                  f"{len(response.content)} bytes)")
    try:
        text = response.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProviderUnavailable(f"{method} {url}: answer is not UTF-8 text") from exc
    return response.status_code, text


def exact_json(value: Any) -> bytes:
    """Compact JSON (as `call_json` sends it) in which a Decimal is a JSON number written exactly
    as the Decimal is (`Decimal("10.500")` -> `10.500`), never through a binary float."""
    return _exact(value).encode()


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a JSON number must be finite")
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_exact(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("floats are not money: use Decimal")
    return json.dumps(value)
