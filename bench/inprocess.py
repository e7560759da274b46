"""`python -m bench.inprocess`: CPU per request of each page, with no server and no load generator.

The shop's ASGI app (production settings, SQLite, the benchmark catalogue) and the ceiling's are
called directly, one request after another, by a returning customer with a cart. Process CPU
time per request is what a worker would spend minus the server's own share, and it is far less
noisy than req/s on a shared machine: the figure to watch while changing a page's code.
`--profile NAME` prints cProfile's top functions for one page.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ceiling
from bench.run import BENCH_CREDENTIALS, PAGE_SIZE, seed_catalogue
from shop.app import create_app
from shop.settings import Settings
from tests.support import run_shop

PAGES = {
    "ceiling": "/products",
    "home": "/",
    "list": "/products?page=7",
    "search": "/products?q=bench&page=2",
    "product": "/products/bench-product-7",
    "cart": "/cart",
}


class Caller:
    """One customer's requests straight into an ASGI app, cookies kept as a browser would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        route, _, query = path.partition("?")
        sent_headers = [(b"host", b"127.0.0.1"), *((k.encode(), v.encode()) for k, v in (headers or {}).items())]
        if self.cookies:
            sent_headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode()))
        if body:
            sent_headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": route, "raw_path": route.encode(), "query_string": query.encode(), "root_path": "",
            "headers": sent_headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
        }
        chunks: list[bytes] = []
        status = 0
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                await asyncio.sleep(3600)
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie":
                        pair = value.decode().split(";", 1)[0]
                        key, _, val = pair.partition("=")
                        self.cookies[key.strip()] = val.strip()
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


async def cpu_per_request(caller: Caller, path: str, count: int) -> float:
    """Microseconds of process CPU per request, over `count` requests."""
    start = time.process_time()
    for _ in range(count):
        status, _ = await caller.request("GET", path)
        assert status == 200, (path, status)
    return (time.process_time() - start) / count * 1e6


async def main_async(args: argparse.Namespace, database_url: str) -> None:
    settings = Settings(env="production", database_url=database_url, secret_key="s" * 48, sandbox=False,
                        db_pool_size=0, reconcile_interval_s=0, page_size=PAGE_SIZE,
                        public_url="https://shop.bench.invalid", provider="checkout",
                        provider_settings={**BENCH_CREDENTIALS, "SHOP_CHECKOUT_API_URL": "http://127.0.0.1:9/unused"})
    shop, bare = create_app(settings), ceiling.create_app()
    async with shop.lifespan(), bare.lifespan():
        customer = Caller(shop)
        await customer.request("GET", "/cart")
        status, _ = await customer.request("POST", "/cart/items", b"product_id=8&quantity=1", {
            "content-type": "application/x-www-form-urlencoded", "x-csrftoken": customer.cookies["csrftoken"],
            "hx-request": "true"})
        assert status == 200, status
        callers = {name: Caller(bare) if name == "ceiling" else customer for name in PAGES}
        for name in args.pages:
            await cpu_per_request(callers[name], PAGES[name], args.count)  # warm the caches
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await cpu_per_request(callers[args.profile], PAGES[args.profile], args.count * 5)
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(35)
        # Pages take turns, round after round, so that each sees the same machine: a shared
        # machine's speed drifts by a third within a minute.
        rounds: dict[str, list[float]] = {name: [] for name in args.pages}
        for _ in range(args.rounds):
            for name in args.pages:
                rounds[name].append(await cpu_per_request(callers[name], PAGES[name], args.count))
        ceiling_us = statistics.median(rounds["ceiling"]) if "ceiling" in rounds else None
        for name, figures in rounds.items():
            median = statistics.median(figures)
            ratio = f"  {ceiling_us / median:.2f}x the ceiling's requests per CPU second" if ceiling_us else ""
            print(f"{name:<8} {median:7.0f} us CPU per request (min {min(figures):.0f}, max {max(figures):.0f}){ratio}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("pages", nargs="*", metavar="PAGE", help=f"pages to measure (default all: {', '.join(PAGES)})")
    parser.add_argument("--count", type=int, default=200, help="requests per page per round (default 200)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the median is reported (default 9)")
    parser.add_argument("--profile", choices=PAGES, help="print cProfile's top functions for this page")
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"),
                        help="order of the profile's functions (default tottime: time in the function itself)")
    args = parser.parse_args(argv)
    args.pages = args.pages or list(PAGES)
    if unknown := set(args.pages) - set(PAGES):
        parser.error(f"unknown page {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        run_shop(database_url, "migrate")
        seed_catalogue(database_url)
        asyncio.run(main_async(args, database_url))


if __name__ == "__main__":
    main()
