"""Test helpers: throwaway databases, the shop CLI in a subprocess, CSRF-aware form posts."""
from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterator, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-key-" + "x" * 40
POSTGRES_ENV = "SHOP_TEST_POSTGRES_URL"


def require_all() -> bool:
    """In CI every suite must run: a missing PostgreSQL or Chromium is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shop_env(database_url: str, **extra: str) -> dict[str, str]:
    """A clean SHOP_ environment for a subprocess; `extra` may override the test defaults
    (the benchmark runs the shop with SHOP_ENV=production)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update({
        "SHOP_ENV": "test",
        "SHOP_DATABASE_URL": database_url,
        "SHOP_SECRET_KEY": TEST_SECRET,
        "SHOP_DB_POOL_SIZE": "2",
        **extra,
    })
    return env


def run_shop(database_url: str, *args: str, check: bool = True, input: str | None = None,
             **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real `shop` command (python -m shop) against a database; `input` goes to its stdin."""
    return subprocess.run(
        [sys.executable, "-m", "shop", *args],
        cwd=ROOT,
        env=shop_env(database_url, **env),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def run_async(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even where a loop is already running
    (Playwright's sync API keeps one in the main thread)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


async def _postgres_admin(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn=url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def fresh_database(kind: str, tmp_dir: Path, admin_url: str | None = None) -> Iterator[str]:
    """A new, empty database of `kind` ('sqlite' or 'postgres'), dropped afterwards. PostgreSQL
    databases are made on `admin_url`'s server (default: SHOP_TEST_POSTGRES_URL)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / ('shop-' + secrets.token_hex(4) + '.db')}"
        return
    admin_url = admin_url or os.environ[POSTGRES_ENV]
    name = "shop_test_" + secrets.token_hex(6)
    run_async(lambda: _postgres_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(admin_url, name)
    finally:
        run_async(lambda: _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[bytes]  # the process group leader: pid == pgid


@contextmanager
def serving(database_url: str, workers: int = 1, port: int | None = None, log_path: Path | None = None,
            **extra_env: str) -> Iterator[Served]:
    """`shop serve` in a subprocess (with `workers` worker processes) on a free port; yields its
    URL and process. Output goes to `log_path`. The process group is stopped afterwards, workers included."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    # SHOP_PUBLIC_URL may be overridden (a production shop must call itself https://).
    env = shop_env(database_url, **{"SHOP_PUBLIC_URL": base_url, **extra_env})
    command = [sys.executable, "-m", "shop", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]
    with serving_command(command, port, log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"shop-live-{port}.log",
                         env) as served:
        yield served


@contextmanager
def serving_command(command: list[str], port: int, log_path: Path, env: dict[str, str] | None = None,
                    ) -> Iterator[Served]:
    """A server `command` listening on `port`, in its own process group, until it answers
    /healthz; output goes to `log_path`. The whole group is stopped afterwards."""
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_for_health(base_url, process, log_path)
            yield Served(base_url, process)
        finally:
            stop_process_group(process)


@contextmanager
def live_server(database_url: str, workers: int = 1, port: int | None = None, log_path: Path | None = None,
                **extra_env: str) -> Iterator[str]:
    """`serving`, yielding only the base URL."""
    with serving(database_url, workers, port, log_path, **extra_env) as served:
        yield served.url


def wait_for_health(base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
        time.sleep(0.1)


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process and everything it started (server workers), then SIGKILL stragglers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary folder, for scripts run outside the test
    command (benchmark, torture); yields an admin URL. Uses SHOP_TEST_POSTGRES_URL if set."""
    if os.environ.get(POSTGRES_ENV):
        yield os.environ[POSTGRES_ENV]
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    pg_bin, root, port = bins[-1], Path(tempfile.mkdtemp(prefix="shop-pg-")), free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run([*as_postgres, str(pg_bin / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                    "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], **quiet)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    subprocess.run([*as_postgres, str(pg_bin / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"),
                    "-w", "-t", "60", "-o", options, "start"], **quiet)
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(pg_bin / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                        "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(root, ignore_errors=True)


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.05) -> None:
    """Poll `check` until it holds (webhooks and reconciliation arrive in the background)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval_s)


@contextmanager
def counting_statements() -> Iterator[list[str]]:
    """Every statement the app's engine runs while the block runs (queries and raw SQL)."""
    from shop.catalog.tables import Product

    engine_class = type(Product._meta.db)  # engines have __slots__: patch the class for the block
    seen: list[str] = []
    original = engine_class.run_querystring

    async def run_querystring(self, querystring, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(str(querystring)[:120])
        return await original(self, querystring, *args, **kwargs)

    engine_class.run_querystring = run_querystring  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        engine_class.run_querystring = original  # type: ignore[method-assign]


@contextmanager
def counting_ca_bundle_loads() -> Iterator[list[tuple[Any, ...]]]:
    """Every time a TLS context loads certificates while the block runs (40 ms of CPU each for
    the CA bundle httpx uses): what building an httpx client with default settings costs."""
    import ssl

    loads: list[tuple[Any, ...]] = []
    original = ssl.SSLContext.load_verify_locations

    def load_verify_locations(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        original(context, *args, **kwargs)

    ssl.SSLContext.load_verify_locations = load_verify_locations  # type: ignore[method-assign]
    try:
        yield loads
    finally:
        ssl.SSLContext.load_verify_locations = original  # type: ignore[method-assign]


CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


def csrf_token(client: httpx.Client | object, path: str = "/") -> str:
    """The token a real page carries in its forms (and the cookie it pairs with)."""
    response = client.get(path)  # type: ignore[attr-defined]
    match = CSRF_FIELD.search(response.text)
    if match:
        return match.group(1)
    token = client.cookies.get("csrftoken")  # type: ignore[attr-defined]
    assert token, "no CSRF token found"
    return token


def post_form(client: object, path: str, data: dict[str, str], htmx: bool = False, token: str | None = None):
    token = token or csrf_token(client, "/products")
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(  # type: ignore[attr-defined]
        path, data={**data, "_csrf_token": token}, headers=headers, follow_redirects=False
    )
