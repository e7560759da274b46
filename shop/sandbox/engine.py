"""Provider-neutral sandbox engine: record store, ids, fault controls, idempotency, webhook sender."""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import logging
import math
import secrets
import ssl
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping

import httpx
from litestar import Request, Response
from piccolo.engine.postgres import PostgresEngine

from shop.db import write_transaction
from shop.sandbox.tables import SandboxRecord
from shop.sql import Insert, Statement

log = logging.getLogger("shop.sandbox")

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # lowercase base32, as provider ids use
JSON_MEDIA_TYPE = "application/json"
FAULTS = frozenset({"http_500", "html_200", "timeout", "accept_then_timeout"})
WEBHOOK_MODES = frozenset({"normal", "drop", "duplicate", "reorder", "delay"})
REFUND_MODES = frozenset({"approve", "decline"})
DEFAULT_CONTROLS: dict[str, Any] = {
    "webhook_url": None,  # None: the shop's own webhook URL for the provider
    "webhooks": "normal",
    "duplicate_count": 3,
    "webhook_delay_ms": 0,
    "webhook_retries": 3,  # extra attempts after a failed delivery
    "webhook_backoff_ms": 200,  # doubled after each failed attempt
    "webhook_timeout_ms": 5000,
    "fail_next": {},  # operation -> fault, each consumed by one request
    "api_delay_ms": 10_000,
    "expire_after_s": 420,  # KNET's page window: 7 minutes
    "refunds": "approve",
    "refund_delay_ms": 300,  # how long a refund stays pending before it settles
}
HTML_ERROR_PAGE = (
    b"<!doctype html><html><head><title>Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    b"request. Please try again later.</p></body></html>"
)


# -- ids, time, signatures ----------------------------------------------------------------------

def new_id(prefix: str) -> str:
    """`prefix_` + 26 random lowercase base32 characters, like `pay_4gubyq2w335upc54dx7a4257lq`."""
    return prefix + "_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(26))


def random_digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def now_ts() -> float:
    return time.time()


def iso_z(ts: float) -> str:
    """`2019-05-23T17:04:05Z`: UTC, whole seconds, as the providers print times."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hmac_sha256_hex(key: str | bytes, message: bytes) -> str:
    raw_key = key.encode() if isinstance(key, str) else key
    return hmac.new(raw_key, message, hashlib.sha256).hexdigest()


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected secret never matches."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def compact_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def exact_json(value: object) -> bytes:
    """Compact JSON in which a Decimal is a JSON number written digit for digit (`10.5`,
    `10.500`), never through a binary float: for APIs that put major-unit amounts in numbers."""
    return _exact(value).encode()


def _exact(value: object) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a JSON number must be finite")
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_exact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def json_response(value: object, status_code: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        content=compact_json(value), status_code=status_code, media_type=JSON_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def empty_response(status_code: int) -> Response:
    return Response(content=b"", status_code=status_code, media_type=JSON_MEDIA_TYPE)


class BadJson(ValueError):
    """The request body is not a JSON object."""


async def read_json_object(request: Request, exact_numbers: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` (SDKs send none for optional bodies).

    With `exact_numbers`, numbers with a fraction are read as Decimal, never float.
    Raises BadJson for anything that is not a JSON object."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_float=Decimal) if exact_numbers else json.loads(raw)
    except ValueError:
        raise BadJson("body is not JSON") from None
    if not isinstance(value, dict):
        raise BadJson("body is not a JSON object")
    return value


# -- storage ------------------------------------------------------------------------------------

def _load(value: object) -> dict[str, Any]:
    if isinstance(value, str):
        loaded = json.loads(value) if value else {}
        return loaded if isinstance(loaded, dict) else {"value": loaded}
    return dict(value) if isinstance(value, dict) else {}


def _transaction() -> Any:
    # IMMEDIATE on SQLite (after this process's other writers): a read-then-write cannot
    # interleave with another's, and no deferred-lock upgrade deadlock can occur.
    return write_transaction(SandboxRecord._meta.db)


@dataclass
class Locked:
    """A record read under a lock; `data` is written back when the block ends without error."""

    key: str
    data: dict[str, Any]


# The store's busiest statements written once (shop/sql.py): Piccolo building each anew took a
# quarter of the sandbox's CPU for a payment, the machine's second-largest share in a checkout.
_RECORD = f'"{SandboxRecord._meta.tablename}"'
_GET = Statement(SandboxRecord, f'SELECT data FROM {_RECORD} WHERE "key" = {{}}')
_GET_LOCKED = Statement(SandboxRecord, f'SELECT data FROM {_RECORD} WHERE "key" = {{}} FOR UPDATE')
_PUT = Statement(SandboxRecord, f'INSERT INTO {_RECORD} (provider, kind, "key", data, created_at, updated_at) '
                                'VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT ("key") '
                                "DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at")
_CREATE = Insert(SandboxRecord, if_new=True)  # a record a key already holds is left as it is
_SAVE = Statement(SandboxRecord, f'UPDATE {_RECORD} SET data = {{}}, updated_at = {{}} WHERE "key" = {{}}')


class Store:
    """One provider's records in `SandboxRecord`, keyed `<provider>:<key>` (no in-memory state:
    several app processes may serve the same sandbox)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def full_key(self, key: str) -> str:
        return f"{self.provider}:{key}"

    async def get(self, key: str) -> dict[str, Any] | None:
        row = await _GET.first(self.full_key(key))
        return _load(row["data"]) if row else None

    async def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = {self.full_key(key): key for key in keys}
        if not wanted:
            return {}
        rows = await SandboxRecord.select(SandboxRecord.key, SandboxRecord.data).where(
            SandboxRecord.key.is_in(list(wanted))
        )
        return {wanted[row["key"]]: _load(row["data"]) for row in rows}

    async def put(self, kind: str, key: str, data: Mapping[str, Any]) -> None:
        """Insert or replace."""
        now = datetime.now(timezone.utc)
        await _PUT.rows(self.provider, kind, self.full_key(key), json.dumps(data), now, now)

    async def records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(key without the provider prefix, data) of every record of `kind`, oldest first."""
        rows = await SandboxRecord.select(SandboxRecord.key, SandboxRecord.data).where(
            (SandboxRecord.provider == self.provider) & (SandboxRecord.kind == kind)
        ).order_by(SandboxRecord.id)
        prefix = len(self.provider) + 1
        return [(row["key"][prefix:], _load(row["data"])) for row in rows]

    async def count(self, kind: str) -> int:
        return await SandboxRecord.count().where(
            (SandboxRecord.provider == self.provider) & (SandboxRecord.kind == kind)
        )

    async def delete(self, key: str) -> None:
        await SandboxRecord.delete().where(SandboxRecord.key == self.full_key(key))

    @asynccontextmanager
    async def locked(
        self, key: str, kind: str | None = None, create: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Locked | None]:
        """Read-modify-write one record in a transaction that excludes other writers of it.

        With `create` (and `kind`), a missing record is first inserted with that data. Yields
        None when the record does not exist. Other store calls made inside the block join
        the same transaction. Never start background tasks inside it (they would inherit it)."""
        full = self.full_key(key)
        async with _transaction():
            if create is not None:
                await _CREATE.rows(provider=self.provider, kind=kind or "record", key=full, data=json.dumps(create))
            # On PostgreSQL SELECT ... FOR UPDATE: the row is ours until commit (SQLite's
            # IMMEDIATE transaction already excludes every other writer).
            select = _GET_LOCKED if isinstance(SandboxRecord._meta.db, PostgresEngine) else _GET
            row = await select.first(full)
            if row is None:
                yield None
                return
            holder = Locked(key=key, data=_load(row["data"]))
            yield holder
            await _SAVE.rows(json.dumps(holder.data), datetime.now(timezone.utc), full)

    async def land_once(self, key: str, record: dict[str, Any], still_open: bool, now: float) -> dict[str, Any]:
        """`record` (read at `key`) with the customer's first landing on its payment page
        recorded, once, while it is still open: the KNET page's window counts from it."""
        if not still_open or record.get("landed_at") is not None:
            return record
        async with self.locked(key) as held:
            assert held is not None
            if held.data.get("landed_at") is None:
                held.data["landed_at"] = now
            return held.data


# -- fault controls -----------------------------------------------------------------------------

CONTROL_KEY = "control"


class ControlError(ValueError):
    """A control value the sandbox does not understand."""


def _non_negative_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ControlError(f"{name} must be a number >= 0")
    return value


def validate_controls(changes: Mapping[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """Check a partial control update; `operations` are the names `fail_next` accepts.

    Raises ControlError."""
    allowed_operations = set(operations)
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in DEFAULT_CONTROLS:
            raise ControlError(f"unknown control {name!r}")
        if name == "webhook_url":
            if value is not None and (not isinstance(value, str) or not value.startswith(("http://", "https://"))):
                raise ControlError("webhook_url must be an http(s) URL or null")
        elif name == "webhooks":
            if value not in WEBHOOK_MODES:
                raise ControlError(f"webhooks must be one of {sorted(WEBHOOK_MODES)}")
        elif name == "refunds":
            if value not in REFUND_MODES:
                raise ControlError(f"refunds must be one of {sorted(REFUND_MODES)}")
        elif name == "fail_next":
            if not isinstance(value, dict):
                raise ControlError("fail_next must be an object of operation: fault")
            for operation, fault in value.items():
                if operation not in allowed_operations:
                    raise ControlError(f"fail_next: unknown operation {operation!r} ({sorted(allowed_operations)})")
                if fault is not None and fault not in FAULTS:
                    raise ControlError(f"fail_next: unknown fault {fault!r} ({sorted(FAULTS)})")
        elif name in {"duplicate_count", "webhook_retries"}:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
                raise ControlError(f"{name} must be a whole number from 0 to 20")
        else:
            value = _non_negative_number(name, value)
        clean[name] = value
    return clean


async def get_controls(store: Store) -> dict[str, Any]:
    stored = await store.get(CONTROL_KEY) or {}
    return {**DEFAULT_CONTROLS, **stored, "fail_next": dict(stored.get("fail_next") or {})}


async def update_controls(store: Store, changes: Mapping[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """Merge `changes` into the stored controls (`fail_next` merges per operation; null clears).

    Raises ControlError."""
    clean = validate_controls(changes, operations)
    async with store.locked(CONTROL_KEY, kind="control", create={}) as record:
        assert record is not None
        fail_next = dict(record.data.get("fail_next") or {})
        for operation, fault in (clean.pop("fail_next", None) or {}).items():
            if fault is None:
                fail_next.pop(operation, None)
            else:
                fail_next[operation] = fault
        record.data.update(clean)
        record.data["fail_next"] = fail_next
    return await get_controls(store)


async def reset_controls(store: Store) -> dict[str, Any]:
    await store.delete(CONTROL_KEY)
    return await get_controls(store)


async def take_fault(store: Store, operation: str) -> str | None:
    """The fault armed for `operation`, consumed so that exactly one request gets it."""
    current = await store.get(CONTROL_KEY)
    if not current or operation not in (current.get("fail_next") or {}):
        return None  # the common case stays a plain read, no write lock
    async with store.locked(CONTROL_KEY) as record:
        if record is None:
            return None
        fail_next = dict(record.data.get("fail_next") or {})
        fault = fail_next.pop(operation, None)
        record.data["fail_next"] = fail_next
    return fault


async def with_fault(
    fault: str | None, controls: Mapping[str, Any], work: Callable[[], Awaitable[Response]]
) -> Response:
    """Answer as the armed fault says; `work` runs only when the fault lets the request through."""
    delay_s = float(controls["api_delay_ms"]) / 1000
    if fault == "http_500":
        return Response(content=b"", status_code=500, media_type="text/plain")
    if fault == "html_200":
        # What a proxy or WAF in front of an API sometimes answers: HTML, and a 200.
        return Response(content=HTML_ERROR_PAGE, status_code=200, media_type="text/html")
    if fault == "timeout":
        await asyncio.sleep(delay_s)
        return Response(content=b"", status_code=504, media_type="text/plain")
    response = await work()
    if fault == "accept_then_timeout":
        await asyncio.sleep(delay_s)  # the work is committed; only the answer is late
    return response


# -- idempotency --------------------------------------------------------------------------------

@dataclass
class IdempotentOutcome:
    """What one create-like request answered, and how many objects it created."""

    status_code: int
    body: Any
    created: int = 0
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def _idem_key(scope: str, key: str) -> str:
    # Hashed: client keys may be long or hold any character; the row key stays short and safe.
    return f"idem:{scope}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


async def idempotent(
    store: Store, scope: str, key: str | None, work: Callable[[], Awaitable[IdempotentOutcome]]
) -> IdempotentOutcome:
    """Run `work` once per (scope, key): a repeated key gets the stored answer, creates nothing.

    Requests and creations are counted per key for the stats. Only successful (2xx) answers are
    stored, so a request that failed validation can be corrected and sent again with its key.
    `work` runs inside the key's lock and transaction: what it writes commits with the answer.
    Its `after_commit` callbacks run once the transaction has committed."""
    if not key:
        outcome = await work()
        for callback in outcome.after_commit:
            callback()
        return outcome
    initial = {"scope": scope, "key": key, "requests": 0, "created": 0, "response": None}
    async with store.locked(_idem_key(scope, key), kind="idempotency", create=initial) as record:
        assert record is not None
        record.data["requests"] = int(record.data.get("requests", 0)) + 1
        stored = record.data.get("response")
        if stored:
            return IdempotentOutcome(status_code=stored["status_code"], body=stored["body"])
        outcome = await work()
        record.data["created"] = int(record.data.get("created", 0)) + outcome.created
        if 200 <= outcome.status_code < 300:
            record.data["response"] = {"status_code": outcome.status_code, "body": outcome.body}
    for callback in outcome.after_commit:
        callback()
    return outcome


async def idempotency_stats(store: Store, scope: str) -> dict[str, dict[str, int]]:
    """{key: {"requests": n, "payments": m}} for `scope` and its sub-scopes (`scope:...`)."""
    stats: dict[str, dict[str, int]] = {}
    for _, data in await store.records("idempotency"):
        recorded = str(data.get("scope", ""))
        if recorded == scope or recorded.startswith(scope + ":"):
            stats[str(data["key"])] = {"requests": int(data.get("requests", 0)), "payments": int(data.get("created", 0))}
    return stats


# -- webhooks -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Webhook:
    """One notification as it goes on the wire: exact body bytes and headers (signature included)."""

    event_id: str
    event_type: str
    body: bytes
    headers: Mapping[str, str]


async def record_webhooks(store: Store, owner: str, webhooks: list[Webhook]) -> None:
    """Keep each notification (for replays) and its owner's ordered index; joins the caller's
    transaction when called inside `Store.locked`."""
    if not webhooks:
        return
    for webhook in webhooks:
        await store.put("event", f"event:{webhook.event_id}", {
            "owner": owner,
            "type": webhook.event_type,
            "body": webhook.body.decode(),
            "headers": dict(webhook.headers),
            "created_at": now_ts(),
        })
    async with store.locked(f"events:{owner}", kind="event_index", create={"events": []}) as index:
        assert index is not None
        index.data["events"] = [*index.data.get("events", []), *(w.event_id for w in webhooks)]


async def load_webhooks(store: Store, owner: str) -> list[Webhook]:
    """Every notification recorded for `owner`, in the order they were made."""
    index = await store.get(f"events:{owner}") or {}
    event_ids: list[str] = list(index.get("events", []))
    records = await store.get_many(f"event:{event_id}" for event_id in event_ids)
    webhooks = []
    for event_id in event_ids:
        data = records.get(f"event:{event_id}")
        if data:
            webhooks.append(Webhook(event_id, data["type"], data["body"].encode(), data.get("headers", {})))
    return webhooks


async def list_events(store: Store) -> list[dict[str, Any]]:
    return [
        {"event_id": key.removeprefix("event:"), "type": data["type"], "owner": data["owner"]}
        for key, data in await store.records("event")
    ]


_background: set[asyncio.Task[Any]] = set()  # strong references, so running tasks are not collected


def spawn(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run in the background, never blocking the request that caused it.

    A fresh context: the task must not inherit a database transaction or request state."""
    task = asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _record_delivery(store: Store, webhook: Webhook, url: str, copy: int, attempt: int,
                           status_code: int | None, error: str | None) -> None:
    sent_at = now_ts()
    await store.put("delivery", f"delivery:{webhook.event_id}:{time.time_ns()}{secrets.token_hex(2)}", {
        "event_id": webhook.event_id,
        "type": webhook.event_type,
        "url": url,
        "copy": copy,
        "attempt": attempt,
        "status_code": status_code,
        "error": error,
        "sent_at": sent_at,
    })


async def _post_with_retries(client: httpx.AsyncClient, store: Store, url: str, webhook: Webhook,
                             copy: int, controls: Mapping[str, Any]) -> None:
    attempts = 1 + int(controls["webhook_retries"])
    backoff_s = float(controls["webhook_backoff_ms"]) / 1000
    for attempt in range(1, attempts + 1):
        status_code: int | None = None
        error: str | None = None
        try:
            response = await client.post(url, content=webhook.body, headers=dict(webhook.headers))
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        await _record_delivery(store, webhook, url, copy, attempt, status_code, error)
        if status_code is not None and 200 <= status_code < 300:
            return
        if attempt < attempts:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every delivery client: httpx builds a new one per client, loading the
    CA bundle, which held the sandbox's event loop 40 ms for each payment's notifications."""
    return httpx.create_ssl_context()


def _delivery_client(controls: Mapping[str, Any]) -> httpx.AsyncClient:
    """A client for one round of notifications, with the timeout the controls set."""
    timeout_s = float(controls["webhook_timeout_ms"]) / 1000
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)), follow_redirects=False,
                             verify=_tls())


async def post_once(store: Store, url: str, webhook: Webhook, controls: Mapping[str, Any],
                    copy: int = 1) -> httpx.Response | None:
    """POST one notification now, without retries, record the delivery and return the answer
    (None when no answer came): for providers that read the merchant's reply before going on
    (KNET's tranportal waits for `REDIRECT=<url>`)."""
    status_code: int | None = None
    error: str | None = None
    response: httpx.Response | None = None
    try:
        async with _delivery_client(controls) as client:
            response = await client.post(url, content=webhook.body, headers=dict(webhook.headers))
            status_code = response.status_code
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    await _record_delivery(store, webhook, url, copy, 1, status_code, error)
    return response


async def deliver(store: Store, url: str, webhooks: list[Webhook], controls: Mapping[str, Any],
                  honour_mode: bool = True) -> None:
    """POST each notification to `url` as the controls say: in order, dropped, duplicated,
    reordered (each batch reversed) or delayed; failed deliveries are retried with backoff.
    Every attempt is recorded."""
    mode = controls["webhooks"] if honour_mode else "normal"
    if mode == "drop" or not webhooks:
        return
    batch = list(reversed(webhooks)) if mode == "reorder" else list(webhooks)
    copies = max(1, int(controls["duplicate_count"])) if mode == "duplicate" else 1
    if mode == "delay":
        await asyncio.sleep(float(controls["webhook_delay_ms"]) / 1000)
    try:
        async with _delivery_client(controls) as client:
            for webhook in batch:
                for copy in range(1, copies + 1):
                    await _post_with_retries(client, store, url, webhook, copy, controls)
    except Exception:  # a background task has no caller to report to: log, never crash the loop
        log.exception("sandbox %s: webhook delivery to %s failed", store.provider, url)


def dispatch(store: Store, url: str, webhooks: list[Webhook], controls: Mapping[str, Any],
             honour_mode: bool = True) -> None:
    """Deliver in the background (call after the transaction that recorded them committed)."""
    if webhooks:
        spawn(deliver(store, url, list(webhooks), dict(controls), honour_mode))


async def delivery_log(store: Store) -> list[dict[str, Any]]:
    """Every delivery attempt so far, in the order they were made."""
    rows = [data for _, data in await store.records("delivery")]
    rows.sort(key=lambda row: float(row.get("sent_at", 0)))
    return [
        {key: row.get(key) for key in ("event_id", "type", "status_code", "attempt", "copy", "error", "url")}
        for row in rows
    ]
