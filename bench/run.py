"""`python -m bench`: seed, serve, load, report one line per figure against the issue's targets."""
from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import logging
import math
import os
import platform
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from bench import clients, wrk
from bench.catalogue import CATEGORIES, PRODUCTS, add_catalogue
from bench.procs import ceiling_server, cores_used, worker_memory
from shop.settings import DEFAULT_SERVER, SERVERS, Settings
from tests.support import Served, fresh_database, run_shop, serving, throwaway_postgres

PAGE_SIZE = 24
PAGES = ("list", "product", "cart")
# Provider credentials of this run only: the sandbox process accepts them, and the shop in
# production mode accepts them because they are not the built-in sandbox's well-known values.
BENCH_CREDENTIALS = {
    "SHOP_CHECKOUT_SECRET_KEY": "sk_sbox_" + "benchmarkloadgenerator" + "abcd" + "q",
    "SHOP_CHECKOUT_WEBHOOK_SECRET": "whsec_bench_" + "k" * 24,
    "SHOP_CHECKOUT_PROCESSING_CHANNEL_ID": "pc_bench",
}
# Customers prepared per second of a checkout run: more than the shop places, so none pays twice.
CHECKOUT_CUSTOMERS_PER_S = 400
WARM_UP_S = 3
# A run during which the host took more of the machine than this is made again (see Bench.measure).
QUIET_STEAL_CORES = 0.05
TRIES_PER_RUN = 3
TARGETS = {
    "page_ratio": 0.5, "page_p99_ms": 50.0, "add": 500.0, "checkout": 100.0, "webhook": 500.0,
    "statements": 4, "rss_mib": 100.0, "scaling": 1.7,
}


@dataclass
class Sample:
    """One run's figures, and how much CPU the host took from this machine during it."""
    per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    steal_cores: float
    cores: dict[str, float] = field(default_factory=dict)  # cores used by each part (see procs.cores_used)


@dataclass
class Figure:
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    errors: int = 0
    note: str = ""
    steal_cores: list[float] = field(default_factory=list)  # per run: CPU taken by the host
    repeated: int = 0  # runs made again because the host was busy
    cores: list[dict[str, float]] = field(default_factory=list)  # per run, when measured

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def add(self, sample: Sample) -> None:
        self.runs.append(sample.per_s)
        self.p50s.append(sample.p50_ms)
        self.p99s.append(sample.p99_ms)
        self.errors += sample.errors
        self.steal_cores.append(sample.steal_cores)
        if sample.cores:
            self.cores.append(sample.cores)

    def line(self, verdict: str = "", extra: str = "") -> str:
        text = (f"{self.name:<28} {self.unit} median {self.median:8.1f} (min {min(self.runs):.1f}, "
                f"max {max(self.runs):.1f})  p50 {statistics.median(self.p50s):6.1f} ms  "
                f"p99 {statistics.median(self.p99s):6.1f} ms  errors {self.errors}")
        used = ""
        if self.cores:  # each part's median over the runs
            used = "cores used: " + ", ".join(
                f"{part} {statistics.median(run[part] for run in self.cores):.2f}" for part in self.cores[0])
        steal = f"host steal up to {max(self.steal_cores):.2f} cores" if self.steal_cores else ""
        if self.repeated:
            steal += f" ({self.repeated} run{'s' * (self.repeated > 1)} made again: host busy)"
        return "  ".join(part for part in (text, extra, self.note, used, steal, verdict) if part)


def verdict(ok: bool, target: str) -> str:
    return f"{'PASS' if ok else 'FAIL'} (target {target})"


class Bench:
    def __init__(self, args: argparse.Namespace, stack: ExitStack, tmp: Path) -> None:
        self.args, self.stack, self.tmp = args, stack, tmp
        self.lines: list[str] = []
        self.failures = 0
        self.repeats_left = args.busy_repeats

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def report(self, figure: Figure, ok: bool | None = None, target: str = "", extra: str = "") -> None:
        if ok is False:
            self.failures += 1
        self.say(figure.line(verdict(ok, target) if ok is not None else "", extra))

    def check(self, label: str, value: str, ok: bool, target: str) -> None:
        if not ok:
            self.failures += 1
        self.say(f"{label:<28} {value}  {verdict(ok, target)}")

    # ---- set-up ----------------------------------------------------------------------------
    def database(self, kind: str, admin_url: str | None = None) -> str:
        url = self.stack.enter_context(fresh_database(kind, self.tmp, admin_url))
        run_shop(url, "migrate")
        seed_catalogue(url)
        return url

    def sandbox(self) -> Served:
        """The provider sandbox as its own process: production refuses to mount sandboxes."""
        url = self.stack.enter_context(fresh_database("sqlite", self.tmp / "sandbox"))
        run_shop(url, "migrate")
        sandbox = self.stack.enter_context(serving(
            url, workers=self.args.sandbox_workers, SHOP_SANDBOX="1", SHOP_RECONCILE_INTERVAL_S="0",
            SHOP_SERVER=self.args.server, **BENCH_CREDENTIALS,
        ))
        # Its own notifications would go to the shop's https public URL, which does not resolve:
        # retrying them cost the sandbox most of its time. The webhook figure sends signed ones.
        httpx.post(f"{sandbox.url}/sandbox/checkout/_control", json={"webhooks": "drop"}).raise_for_status()
        return sandbox

    @contextmanager
    def shop(self, database_url: str, workers: int, sandbox: Served) -> Iterator[Served]:
        """The shop as in production: secure cookies, CSRF, security headers, HSTS, a connection
        pool, reconciliation on. Its public URL is https (production insists); nothing calls it:
        the load goes to the plain-http loopback port, as a TLS-terminating proxy's would."""
        with serving(
            database_url, workers=workers, SHOP_ENV="production", SHOP_SECRET_KEY=secrets.token_urlsafe(48),
            SHOP_SANDBOX="0", SHOP_PUBLIC_URL="https://shop.bench.invalid", SHOP_DB_POOL_SIZE="10",
            SHOP_SERVER=self.args.server, SHOP_PAGE_SIZE=str(PAGE_SIZE), SHOP_PROVIDER="checkout",
            SHOP_CHECKOUT_API_URL=f"{sandbox.url}/sandbox/checkout", **BENCH_CREDENTIALS,
        ) as served:
            yield served

    # ---- scenarios -------------------------------------------------------------------------
    def measure(self, figure: Figure, run_once: Callable[[], Sample]) -> None:
        """Adds one run to `figure`. A run during which the host took more than QUIET_STEAL_CORES
        of this VM is made again, up to TRIES_PER_RUN tries and --busy-repeats in the whole
        benchmark, and the quietest try is kept: the targets are about the shop, and a neighbour
        taking a third of the 2 cores for seconds moved p99s past them (the ceiling's own to
        70 ms). `run_once` prepares its own customers or events, so a try repeats nothing."""
        quietest: Sample | None = None
        for attempt in range(TRIES_PER_RUN):
            if attempt:
                figure.repeated += 1
                self.repeats_left -= 1
            sample = run_once()
            if quietest is None or sample.steal_cores < quietest.steal_cores:
                quietest = sample
            if sample.steal_cores <= QUIET_STEAL_CORES or self.repeats_left <= 0:
                break
        figure.add(quietest)  # type: ignore[arg-type]

    def wrk_run(self, url: str, script: Path | None) -> tuple[wrk.WrkResult, float]:
        """One wrk run, and the cores the host took from this machine meanwhile."""
        steal_before = _steal_s()
        result = wrk.run(url, self.args.duration, script)
        return result, (_steal_s() - steal_before) / self.args.duration

    def wrk_sample(self, url: str, script: Path | None) -> Sample:
        result, steal = self.wrk_run(url, script)
        return Sample(result.requests_per_s, result.p50_ms, result.p99_ms, result.errors, steal)

    def wrk_figure(self, figure: Figure, url: str, script: Path | None) -> None:
        self.measure(figure, lambda: self.wrk_sample(url, script))

    def page_scripts(self, url: str, names: tuple[str, ...], prefix: str) -> dict[str, Path]:
        """wrk scripts of a returning customer with one item in the cart (each shop its own)."""
        customer = asyncio.run(clients.customers_with_carts(url, [[1]]))[0]
        rng = random.Random(1)
        list_paths = [f"/products?page={n}" for n in range(1, PRODUCTS // PAGE_SIZE + 2)]
        list_paths += [f"/products?category=bench-category-{c}" for c in range(CATEGORIES)]
        product_paths = [f"/products/bench-product-{n}" for n in range(PRODUCTS)]
        rng.shuffle(list_paths)
        rng.shuffle(product_paths)
        paths = {"list": list_paths, "product": product_paths, "cart": ["/cart"]}
        return {name: wrk.write_script(self.tmp / f"{prefix}-{name}.lua", clients.page_requests(customer, paths[name]))
                for name in names}

    def pages(self, tag: str, url: str, ceiling: Served) -> dict[str, Figure]:
        """Product list, product page and cart page, each run interleaved with the ceiling page
        so both see the same machine, after a warm-up run of each."""
        scripts = self.page_scripts(url, PAGES, "pages")
        for script in scripts.values():  # uncounted: each page's first rendering, as in `scaling`
            wrk.run(f"{url}/", WARM_UP_S, script)
        figures = {name: Figure(f"{name} page ({tag})", "req/s") for name in scripts}
        figures["ceiling"] = Figure("ceiling page (bare Litestar)", "req/s")
        for _ in range(self.args.repeats):
            self.wrk_figure(figures["ceiling"], f"{ceiling.url}/products", None)
            for name, script in scripts.items():
                self.wrk_figure(figures[name], f"{url}/", script)
        return figures

    def scaling(self, one: Served, two: Served) -> None:
        """The list page with 1 and with 2 workers on PostgreSQL. Both shops run side by side and
        their runs take turns (1, 2, then 2, 1, ...), so each pair of runs sees the same machine;
        the figure is the median of the pairs' ratios. On a VM whose host takes a core away for
        seconds at a time, runs of the two made minutes apart differed by more than the target.
        Each shop first serves every list page once in an uncounted run (3 s), so both are
        compared at their steady state, not while 2 workers render each page twice as 1 does once."""
        shops = {1: one, 2: two}
        scripts = {n: self.page_scripts(served.url, ("list",), f"workers-{n}")["list"] for n, served in shops.items()}
        for n, served in shops.items():
            wrk.run(f"{served.url}/", WARM_UP_S, scripts[n])
        figures = {n: Figure(f"list page (PostgreSQL, {n} worker{'s' * (n > 1)})", "req/s") for n in shops}

        def run_once(n: int) -> Sample:
            # What each part used shows what the machine had left for the shop's workers.
            with cores_used({"shop": shops[n].process.pid}) as cores:
                sample = self.wrk_sample(f"{shops[n].url}/", scripts[n])
            sample.cores = cores
            return sample

        for repeat in range(self.args.repeats):
            for n in (1, 2) if repeat % 2 == 0 else (2, 1):
                self.measure(figures[n], functools.partial(run_once, n))
        for figure in figures.values():
            self.report(figure)
        ratios = [two_per_s / one_per_s for one_per_s, two_per_s in zip(figures[1].runs, figures[2].runs)]
        scaling = statistics.median(ratios)
        # Printed rounded down, so a ratio shown as 1.70x has met 1.7x.
        shown = ", ".join(f"{math.floor(r * 100) / 100:.2f}" for r in ratios)
        self.check("2 workers / 1 worker (list)", f"{math.floor(scaling * 100) / 100:.2f}x (pairs {shown})",
                   scaling >= TARGETS["scaling"], f">= {TARGETS['scaling']}x")

    def add_to_cart(self, tag: str, url: str) -> Figure:
        """Returning customers each add one more of a product already in their cart, going round
        their 8 lines. Each run has new customers with 8 different products, enough of them that
        at 2,000 adds a second no line grows by more than 50 in a run: the shop refuses an add
        past 99 a line with a 422, which would count as an error."""
        rng = random.Random(2)
        figure = Figure(f"add to cart ({tag})", "req/s")
        customer_count = max(128, 2_000 * self.args.duration // (8 * 50))

        def run_once() -> Sample:
            lines = [rng.sample(range(1, PRODUCTS + 1), 8) for _ in range(customer_count)]
            customers = asyncio.run(clients.customers_with_carts(url, [ids[:1] for ids in lines]))
            script = wrk.write_script(self.tmp / "add.lua", clients.add_to_cart_requests(customers, lines))
            return self.wrk_sample(f"{url}/", script)

        for _ in range(self.args.repeats):
            self.measure(figure, run_once)
        return figure

    def checkout(self, tag: str, url: str, database_url: str) -> Figure:
        """Checkout start: customers whose carts were filled beforehand press Pay (POST /checkout/,
        CSRF), each once: the order is placed, stock reserved and the payment created at the
        sandbox, answered by a 303 to its page. A figure counts payments started, read from the
        database; a request that started none is an error. wrk drives it, as every other figure:
        an httpx load generator had used as much CPU per order as the shop."""
        figure = Figure(f"checkout start ({tag})", "orders/s")
        rng = random.Random(3)

        def run_once() -> Sample:
            carts = [[rng.randrange(1, PRODUCTS + 1)] for _ in range(self.args.duration * CHECKOUT_CUSTOMERS_PER_S)]
            customers = asyncio.run(clients.customers_with_carts(url, carts))
            script = wrk.write_script(self.tmp / "checkout.lua", clients.checkout_requests(customers))
            before = _payments_started(database_url)
            result, steal = self.wrk_run(f"{url}/", script)
            # wrk stops counting at the deadline; requests still in flight may start payments after it.
            started = min(_payments_started(database_url) - before, result.requests)
            elapsed_s = result.requests / result.requests_per_s if result.requests_per_s else self.args.duration
            return Sample(started / elapsed_s, result.p50_ms, result.p99_ms, result.errors + result.requests - started,
                          steal)

        for _ in range(self.args.repeats):
            self.measure(figure, run_once)
        return figure

    def webhooks(self, tag: str, url: str, database_url: str) -> Figure:
        attempts = _attempts(database_url)
        figure = Figure(f"webhook ingest ({tag})", "req/s")
        if not attempts:
            figure.add(Sample(0, 0, 0, 1, 0))
            return figure
        secret = BENCH_CREDENTIALS["SHOP_CHECKOUT_WEBHOOK_SECRET"]
        seeds = itertools.count()  # each try its own events, so none is a repeat of an earlier try's

        def run_once() -> Sample:
            count = max(2_000, self.args.duration * 2_000)
            script = wrk.write_script(self.tmp / "webhooks.lua",
                                      clients.checkout_webhooks(attempts, secret, count, seed=next(seeds)))
            return self.wrk_sample(f"{url}/", script)

        for _ in range(self.args.repeats):
            self.measure(figure, run_once)
        figure.note = f"(over {len(attempts)} payments; 1 in 5 events a duplicate)"
        return figure

    def memory(self, tag: str, served: Served) -> None:
        memory = worker_memory(served.process.pid)
        rss = max(m.rss_mib for m in memory)
        self.check(f"worker memory ({tag})", f"RSS {rss:.1f} MiB (peak {max(m.peak_mib for m in memory):.1f} MiB), "
                   f"{len(memory)} worker(s)", rss <= TARGETS["rss_mib"], f"RSS <= {TARGETS['rss_mib']:.0f} MiB")

    def flows(self, tag: str, url: str, database_url: str) -> None:
        add = self.add_to_cart(tag, url)
        self.report(add, add.median >= TARGETS["add"] and not add.errors, f">= {TARGETS['add']:.0f} req/s, no errors")
        checkout = self.checkout(tag, url, database_url)
        self.report(checkout, checkout.median >= TARGETS["checkout"] and not checkout.errors,
                    f">= {TARGETS['checkout']:.0f} orders/s, no errors")
        hooks = self.webhooks(tag, url, database_url)
        self.report(hooks, hooks.median >= TARGETS["webhook"] and not hooks.errors,
                    f">= {TARGETS['webhook']:.0f}/s, no errors")

    def report_pages(self, figures: dict[str, Figure], statements: dict[str, float]) -> None:
        ceiling = figures.pop("ceiling")
        self.report(ceiling, extra="(no database, sessions or CSRF)")
        for name, figure in figures.items():
            ratio = figure.median / ceiling.median
            ok = (ratio >= TARGETS["page_ratio"] and statistics.median(figure.p99s) < TARGETS["page_p99_ms"]
                  and not figure.errors and statements.get(name, 0) <= TARGETS["statements"])
            extra = f"{statements.get(name, float('nan')):.1f} statements/req  {ratio:.2f}x ceiling"
            self.report(figure, ok, ">= 0.50x ceiling, p99 < 50 ms, <= 4 statements", extra)

    # ---- the whole run ---------------------------------------------------------------------
    def run(self) -> int:
        started = time.monotonic()
        self.say(f"bench: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                 f"server {self.args.server}, wrk -t{wrk.THREADS} -c{wrk.CONNECTIONS} -d{self.args.duration}s "
                 f"x{self.args.repeats}, {PRODUCTS} products in {CATEGORIES} categories, {PAGE_SIZE} a page, "
                 f"load average {_loadavg()}")
        sandbox = self.sandbox()
        sqlite_url = self.database("sqlite")
        statements = _statements(sqlite_url)
        self.say("statements per request (SQLite, counted in-process): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in statements.items()))
        with ceiling_server(self.args.server) as ceiling, self.shop(sqlite_url, 1, sandbox) as shop:
            self.report_pages(self.pages("SQLite, 1 worker", shop.url, ceiling), statements)
            self.flows("SQLite, 1 worker", shop.url, sqlite_url)
            self.memory("SQLite, 1 worker, after all", shop)
        if not self.args.skip_postgres:
            admin = self.stack.enter_context(throwaway_postgres())
            pg_url = self.database("postgres", admin)
            with self.shop(pg_url, 2, sandbox) as two:
                with self.shop(pg_url, 1, sandbox) as one:
                    self.scaling(one, two)
                self.flows("PostgreSQL, 2 workers", two.url, pg_url)
                self.memory("PostgreSQL, 2 workers, after all", two)
        self.say(f"bench: done in {time.monotonic() - started:.0f} s, load average {_loadavg()}, "
                 f"{self.failures} target(s) missed")
        return 1 if self.failures else 0


def _steal_s() -> float:
    """CPU time the hypervisor gave to others while this machine's CPUs wanted it (all CPUs)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def _loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _bind(database_url: str) -> None:
    from shop.db import bind_tables, make_engine
    from shop.tables import TABLES

    bind_tables(make_engine(database_url), TABLES)


def seed_catalogue(database_url: str) -> None:
    _bind(database_url)
    asyncio.run(add_catalogue())


def _attempts(database_url: str) -> list[dict[str, Any]]:
    from shop.payments.tables import PaymentAttempt

    _bind(database_url)
    return asyncio.run(PaymentAttempt.select(
        PaymentAttempt.provider_payment_id, PaymentAttempt.merchant_reference, PaymentAttempt.amount_fils,
        PaymentAttempt.currency,
    ).where(PaymentAttempt.provider_payment_id.is_not_null()).order_by(PaymentAttempt.id).run())


def _payments_started(database_url: str) -> int:
    from shop.payments.tables import PaymentAttempt

    _bind(database_url)
    return asyncio.run(PaymentAttempt.count().where(PaymentAttempt.provider_payment_id.is_not_null()).run())


def _statements(database_url: str) -> dict[str, float]:
    """SQL statements per request of each kind, counted in-process against the same database."""
    from litestar.testing import TestClient

    from shop.app import create_app
    from tests.support import counting_statements, post_form

    settings = Settings(env="test", database_url=database_url, secret_key="s" * 40, sandbox=False, db_pool_size=0,
                        reconcile_interval_s=0, page_size=PAGE_SIZE, provider_settings=BENCH_CREDENTIALS)
    requests: dict[str, Callable[[Any], Any]] = {
        "list": lambda c: c.get("/products?page=7"),
        "product": lambda c: c.get("/products/bench-product-7"),
        "cart": lambda c: c.get("/cart"),
        "add to cart": lambda c: post_form(c, "/cart/items", {"product_id": "9", "quantity": "1"}, htmx=True,
                                           token=c.cookies.get("csrftoken")),
    }
    counts = {}
    with TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as client:
        post_form(client, "/cart/items", {"product_id": "8", "quantity": "1"})
        for name, send in requests.items():
            with counting_statements() as seen:
                assert send(client).status_code < 400, name
            counts[name] = float(len(seen))
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run (default 15)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, once each: a smoke test, not figures")
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER, help="ASGI server for shop and ceiling")
    parser.add_argument("--sandbox-workers", type=int, default=1, help="worker processes of the provider sandbox")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite with 1 worker only")
    parser.add_argument("--busy-repeats", type=int, default=16,
                        help=f"most runs made again in the whole benchmark because the host took more than "
                             f"{QUIET_STEAL_CORES} cores during them (default 16; 0 keeps every run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.busy_repeats = 3, 1, 0
    return args


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds every context: each process the run started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of the load
    logging.getLogger("piccolo").setLevel(logging.WARNING)  # nor one per count of payments started
    signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp, ExitStack() as stack:
        try:
            return Bench(args, stack, Path(tmp)).run()
        except KeyboardInterrupt:
            print("bench: interrupted; stopping what it started", file=sys.stderr)
            return 130
