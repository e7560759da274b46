"""Hostile input: a fuzzer over every route the app declares (read from the app, so new routes are
covered), as a stranger, a customer and a signed-in owner with valid CSRF tokens so requests
reach the handlers; SQL-ish search and sort input; bodies over each route's limit.

Runs after the other cases (it locks the loopback address out of staff sign-in, as the
throttle should) and before the final secrets scan."""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from shop.staff.auth import Role
from torture.clients import (Route, active_provider, app_routes, browser, make_active, new_product, page_token,
                             place_order, staff_client)
from torture.figures import Figure, at_least, exactly
from torture.harness import Shop
from torture.registry import case

CASE = "hostile"
# Per backend at full scale, 20,000 in all. On 2 cores PostgreSQL's server competes with the
# shop's workers and the client, so it answers fewer per second: it gets the smaller share.
FULL_REQUESTS = {"sqlite": 12_000, "postgres": 8_000}
CONCURRENCY = 8
# Sandbox test controls would change how the fake providers behave for everyone: not fuzzed.
CONTROL = re.compile(r"^/sandbox/[a-z_]+/_(control|webhooks)")
SQLISH = [
    "' OR '1'='1", "1; DROP TABLE orders;--", "\" OR 1=1 --", "1' UNION SELECT NULL,NULL,NULL--", "%", "_", "%%_%",
    "\\", "'", "''", "`", ";", "--", "/*", "*/", "1)) OR ((1=1", "name DESC", "id; SELECT pg_sleep(5)",
    "' AND randomblob(100000000) AND '", "ORDER BY 1", "1 ORDER BY 99", "created_at,--", "$1", "?", ":name",
    "\x00", "ك' OR 'ك'='ك", "𝕏' OR 1=1", "a" * 199,
]
STRINGS = SQLISH + [
    "", " ", "0", "-1", "1", "2", "00", "9" * 30, "-" + "9" * 25, "1e309", "NaN", "inf", "-0", "0x1F", "1.5", "1,5",
    "١٢٣", "٠", "1.2345", "12.500", "99999999999", "2147483648", "9223372036854775808", "-9223372036854775809",
    "<script>alert(1)</script>", "{{7*7}}", "${7*7}", "{% raw %}", "../../../../etc/passwd", "..%2f..%2f",
    "/staff/../etc", "a\x00b", "\r\nSet-Cookie: x=1", "x\ny", "\t", "\u202e", "\ufeff", "😀" * 40, "ك" * 300,
    "a" * 5000, "//evil.example", "https://evil.example/", "/staff\\evil", "/staff//x", "javascript:alert(1)",
    "true", "false", "null", "[]", "{}", "on", "off", "en", "ar", "fr", "ar;q=x", "*",
    "2026-13-45", "2026-02-30", "0000-00-00", "9999-12-31", "2026-01-01T00:00:00Z", "owner", "finance",
    "operations", "pending", "paid", "captured", "refunded", "cancelled", "hawalli", "salmiya", "capital",
    "checkout", "checkout_setup", "aps", "tap", "upayments", "knet", "KNET1", "8888880000000002",
]
QUERY_NAMES = ["q", "category", "page", "sort", "order", "status", "lang", "next", "governorate", "date", "from",
               "to", "provider", "attempt", "payment_status", "staff", "kind", "ref", "error", "trandata", "param",
               "tap_id", "track_id", "id", "paymentid", "result"]
HEADERS = ["HX-Request", "HX-Target", "HX-Current-URL", "Accept-Language", "Content-Type", "Accept",
           "cko-signature", "hashstring", "x-csrftoken", "Referer", "Origin", "Range", "If-None-Match"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=",
                 "application/json", "text/plain", "text/html; charset=utf-16", "application/xml", "image/png",
                 "application/x-www-form-urlencoded; charset=latin-1", "", "*/*", "application/json; charset=x"]


@dataclass
class Tally:
    sent: int = 0
    errors: list[str] = field(default_factory=list)  # 5xx and dropped connections, described
    per_route: dict[str, int] = field(default_factory=dict)
    reached: int = 0  # answers other than a refusal by the CSRF check or the staff guard


@dataclass
class Fuzzer:
    rng: random.Random
    fields: list[str]  # form field names the shop's own pages use
    known: dict[str, list[str]]  # real ids, slugs, tokens and references, so some requests hit real rows

    def __post_init__(self) -> None:
        self.real_values = [value for values in self.known.values() for value in values] or ["1"]

    def text(self) -> str:
        pick = self.rng.random()
        if pick < 0.55:
            return self.rng.choice(STRINGS)
        if pick < 0.75:
            return self.rng.choice(self.real_values)
        alphabet = self.rng.choice(["0123456789", "abcdef-_./%", "<>\"'&;=(){}[]\\ ", "كتبسلامابتث٠١٢",
                                    "".join(map(chr, range(32, 127)))])
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 80)))

    def path_value(self, name: str, kind: str) -> str:
        if self.known.get(name) and self.rng.random() < 0.4:
            return self.rng.choice(self.known[name])
        if kind == "int":
            return self.rng.choice(["0", "1", "2", "-1", "7", "2147483648", "9223372036854775807",
                                    "9223372036854775808", "99999999999999999999999", "-99999999999999999999"])
        if kind == "path":
            return "/".join(quote(self.text(), safe="") or "x" for _ in range(self.rng.randint(1, 3)))
        return quote(self.text(), safe="") or "x"

    def query(self) -> str:
        parts = []
        for _ in range(self.rng.randint(0, 4)):
            name = self.rng.choice(QUERY_NAMES + self.fields) if self.rng.random() < 0.9 else self.text()
            value = quote(self.text(), safe="") if self.rng.random() < 0.9 else self.rng.choice(
                ["%ff", "%zz", "%", "%c3%28", "%00", "%e2%82", "a%2", "+%2B+"])
            parts.append(f"{quote(name, safe='')}={value}")
        return "&".join(parts)

    def form(self, token: str | None) -> dict[str, str]:
        names = self.rng.sample(self.fields, k=min(len(self.fields), self.rng.randint(0, 8)))
        data = {name: self.text() for name in names}
        if token and self.rng.random() < 0.9:
            data["_csrf_token"] = token
        return data

    def request(self, route: Route, token: str | None) -> dict:
        """The pieces of one hostile request to `route` (arguments for httpx's `request`)."""
        path = route.concrete(**{name: self.path_value(name, kind) for name, kind in route.params})
        query = self.query()
        url = f"{path}?{query}" if query else path
        headers: dict[str, bytes] = {}
        for name in self.rng.sample(HEADERS, k=self.rng.randint(0, 3)):
            value = self.rng.choice(CONTENT_TYPES) if name == "Content-Type" else \
                self.rng.choice(["true", "cart", self.text()[:200]])
            # Raw UTF-8 bytes, but no control characters or edge spaces: the HTTP client refuses those.
            headers[name] = (re.sub(r"[\x00-\x1f\x7f]", " ", value).strip() or "x").encode("utf-8", "replace")
        args: dict = {"method": route.method, "url": url, "headers": headers}
        if route.method == "GET":
            return args
        shape = self.rng.random()
        if shape < 0.6:
            args["data"] = self.form(token)
        elif shape < 0.75:
            args["data"] = self.form(token)
            args["files"] = {self.rng.choice(["image", "file", *self.fields[:3]]):
                             ("x.png", self.rng.randbytes(self.rng.randint(0, 4000)), self.rng.choice(
                                 ["image/png", "image/jpeg", "text/html", "application/octet-stream"]))}
        elif shape < 0.85:
            body = {name: self.rng.choice([self.text(), 1, -1, 10**30, None, [], {"a": [1]}, 1.5, True])
                    for name in self.rng.sample(self.fields, k=min(4, len(self.fields)))}
            args["content"] = json.dumps(body).encode()
            args["headers"].setdefault("Content-Type", b"application/json")
        else:
            args["content"] = self.rng.randbytes(self.rng.randint(0, 3000))
            args["headers"].setdefault("Content-Type", self.rng.choice(CONTENT_TYPES).encode())
        return args


async def send(client: httpx.AsyncClient, args: dict, tally: Tally, label: str) -> httpx.Response | None:
    tally.sent += 1
    tally.per_route[label] = tally.per_route.get(label, 0) + 1
    try:
        response = await client.request(**args)
    except httpx.HTTPError as exc:
        tally.errors.append(f"{args['method']} {args['url'][:120]}: {type(exc).__name__}")
        return None
    if response.status_code >= 500:
        tally.errors.append(f"{args['method']} {args['url'][:120]}: {response.status_code}")
    refused = response.status_code in (401, 403) or response.headers.get("location", "").startswith("/staff/login")
    tally.reached += not refused
    return response


def async_copy(shop: Shop, client: httpx.Client | None) -> httpx.AsyncClient:
    """An async client carrying the cookies (session, CSRF) a sync client collected."""
    cookies = httpx.Cookies()
    if client is not None:
        for cookie in client.cookies.jar:
            cookies.set(cookie.name, cookie.value)
    return httpx.AsyncClient(base_url=shop.base_url, cookies=cookies, timeout=60, follow_redirects=False)


def known_values(owner: httpx.Client, customer: httpx.Client) -> tuple[list[str], dict[str, list[str]]]:
    """Field names from the shop's own forms, and real identifiers to put in paths and fields."""
    pages = [owner.get(p).text for p in ("/staff/orders", "/staff/catalogue", "/staff/catalogue/products/new",
                                         "/staff/catalogue/categories/new", "/staff/accounts", "/staff/emails",
                                         "/staff/providers", "/staff/reports", "/staff/audit")]
    pages += [customer.get(p).text for p in ("/products", "/cart", "/checkout")]
    text = "\n".join(pages)
    fields = sorted(set(re.findall(r'name="([a-z_]+)"', text)) - {"_csrf_token"})
    orders = re.findall(r'href="/staff/orders/(DM[A-Z0-9]+)"', text)[:10]
    return fields, {
        "product_id": re.findall(r'/staff/catalogue/products/(\d+)"', text)[:5],
        "category_id": re.findall(r'/staff/catalogue/categories/(\d+)"', text)[:3],
        "reference": orders,
        "email_id": re.findall(r'/staff/emails/(\d+)/resend', text)[:3],
        "slug": re.findall(r'href="/products/([a-z0-9-]+)"', text)[:5],
        "provider_slug": ["checkout", "aps", "knet", "tap", "upayments", "checkout_setup"],
    }


def weight(route: Route) -> float:
    """Share of the requests a route gets. A sign-in attempt costs an argon2 hash by design, and
    the sandboxes are development tools: both get fewer, so the shop's own pages get more."""
    if route.method == "POST" and route.path == "/staff/login":
        return 0.1
    return 0.3 if route.path.startswith("/sandbox") else 1.0


def request_plan(routes: list[Route], total: int, rng: random.Random) -> list[Route]:
    """`total` routes to hit, in random order, each route at least 3 times."""
    shares = {route: weight(route) for route in routes}
    scale = total / sum(shares.values())
    plan = [route for route in routes for _ in range(max(3, int(shares[route] * scale)))]
    plan += rng.choices(routes, weights=[shares[r] for r in routes], k=max(0, total - len(plan)))
    rng.shuffle(plan)
    return plan


async def fuzz(shop: Shop, routes: list[Route], total: int, seed: int) -> Tally:
    owner = staff_client(shop, Role.OWNER)
    with browser(shop) as customer:
        place_order(customer, new_product(owner, "Fuzz tea", "شاي")[0])
        fields, known = known_values(owner, customer)
        known["public_token"] = [re.search(r"/orders/([\w-]+)", customer.get("/checkout").headers["location"])[1]]
        # The shop refuses an owner's change to their own account, so every id is fair game.
        known["account_id"] = re.findall(r'/staff/accounts/(\d+)"', owner.get("/staff/accounts").text)[:4]
        customer_token, owner_token = page_token(customer), page_token(owner, "/staff/orders")
        clients = {"stranger": async_copy(shop, None), "customer": async_copy(shop, customer),
                   "owner": async_copy(shop, owner)}
    before = active_provider(owner)
    fuzzer = Fuzzer(random.Random(seed), fields, known)
    tally = Tally()
    plan = request_plan(routes, total, fuzzer.rng)
    queue: asyncio.Queue[Route] = asyncio.Queue()
    for route in plan:
        queue.put_nowait(route)

    async def worker() -> None:
        while not queue.empty():
            route = queue.get_nowait()
            who = fuzzer.rng.choice(["stranger", "customer", "owner", "owner"] if route.staff else
                                    ["stranger", "customer", "customer", "owner"])
            token = owner_token if who == "owner" else customer_token if who == "customer" else None
            args = fuzzer.request(route, token)
            if who == "owner" and route.path == "/staff/logout":
                # The owner's session must last the whole run.
                who, args = "customer", fuzzer.request(route, customer_token)
            await send(clients[who], args, tally, f"{route.method} {route.path}")

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        for client in clients.values():
            await client.aclose()
        make_active(owner, before)  # the fuzz may have switched providers; later cases expect the old one
        owner.close()
    return tally


async def sqlish(shop: Shop, routes: list[Route]) -> tuple[int, int]:
    """Every GET route without path parameters, with search, sort and filter parameters full of
    SQL, as the owner (so staff pages answer): (errors, sent)."""
    owner = staff_client(shop, Role.OWNER)
    tally = Tally()
    rng = random.Random(len(routes))
    payloads = SQLISH if shop.scale >= 1 else rng.sample(SQLISH, k=max(3, round(len(SQLISH) * shop.scale * 4)))
    async with async_copy(shop, owner) as client:
        for route in routes:
            if route.method != "GET" or route.params or route.path.startswith("/sandbox"):
                continue
            for payload in payloads:
                names = rng.sample(["q", "sort", "order", "status", "category", "page", "date", "from", "to"], k=3)
                url = f"{route.path}?" + "&".join(f"{name}={quote(payload, safe='')}" for name in names)
                await send(client, {"method": "GET", "url": url, "headers": {"HX-Request": "true"}}, tally, url)
    owner.close()
    return len(tally.errors), tally.sent


async def oversized(shop: Shop, routes: list[Route]) -> tuple[int, int, int]:
    """A body one byte over each POST route's limit, with a Content-Length and chunked. Returns
    (sized bodies not answered 413, chunked bodies accepted or failing, sent). A chunked body may
    also be refused unread (401/403/404) by a route that checks something else first."""
    sized_wrong = chunked_wrong = sent = 0
    owner = staff_client(shop, Role.OWNER)
    async with async_copy(shop, owner) as client:
        token = page_token(owner, "/staff/orders")
        for route in routes:
            if route.method != "POST" or CONTROL.match(route.path):
                continue
            body = f"_csrf_token={token}&x=".encode() + b"a" * route.body_limit
            path = route.concrete(provider_slug="checkout")

            async def chunks(data: bytes = body):
                for i in range(0, len(data), 16384):
                    yield data[i:i + 16384]

            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            sized = await client.post(path, content=body, headers=headers)
            chunked = await client.post(path, content=chunks(), headers=headers)
            sent += 2
            sized_wrong += sized.status_code != 413
            chunked_wrong += chunked.status_code not in (401, 403, 404, 413)
    owner.close()
    return sized_wrong, chunked_wrong, sent


def unhandled_in_log(shop: Shop, offset: int) -> int:
    text = shop.log_path.read_text(encoding="utf-8", errors="replace")[offset:]
    return text.count("unhandled error") + text.count("Traceback")


@case(CASE, order=90)
async def run(shop: Shop) -> list[Figure]:
    routes = [r for r in app_routes(shop) if not CONTROL.match(r.path) or r.method == "GET"]
    total = shop.scaled(FULL_REQUESTS[shop.backend], minimum=3 * len(routes))
    seed = int(os.environ.get("TORTURE_SEED", time.time_ns() % 1_000_000))
    log_offset = len(shop.log_path.read_text(encoding="utf-8", errors="replace"))
    started = time.monotonic()
    tally = await fuzz(shop, routes, total, seed)
    took = time.monotonic() - started
    sql_errors, sql_sent = await sqlish(shop, routes)
    sized_wrong, chunked_wrong, too_big_sent = await oversized(shop, routes)
    print(f"#   {CASE}: seed {seed} (TORTURE_SEED={seed} repeats it), {tally.sent / took:.0f} requests/s")
    for error in tally.errors[:10]:
        print(f"#   {CASE}: {error}")
    return [
        at_least(CASE, "fuzz requests", tally.sent, total),
        exactly(CASE, "routes fuzzed of all the app declares", len(tally.per_route), len(routes)),
        at_least(CASE, "fuzz requests reaching a handler (not refused by CSRF or guard)", tally.reached,
                 tally.sent // 2),
        exactly(CASE, "fuzz 5xx or dropped connections", len(tally.errors), 0),
        exactly(CASE, "SQL-ish search/sort/filter requests failing", sql_errors, 0),
        at_least(CASE, "SQL-ish requests", sql_sent, 100),
        exactly(CASE, "over-limit bodies with a length not refused with 413", sized_wrong, 0),
        exactly(CASE, "over-limit chunked bodies accepted or failing", chunked_wrong, 0),
        at_least(CASE, "over-limit bodies sent (sized and chunked)", too_big_sent, 2),
        exactly(CASE, "unhandled errors in the shop's log", unhandled_in_log(shop, log_offset), 0),
    ]
