"""The benchmark stays runnable: it imports, its ceiling page serves, its wrk parsing holds."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from litestar.testing import TestClient

from bench import ceiling, clients, procs, run, wrk
from tests.support import require_all

WRK_OUTPUT = """Running 15s test @ http://127.0.0.1:8000/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    14.71ms    3.10ms  61.29ms   90.00%
  Latency Distribution
     50%   14.10ms
     75%   15.42ms
     90%   17.61ms
     99%    1.20s
  32420 requests in 15.02s, 520.17MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   2158.54
Transfer/sec:     34.63MB
"""


def test_the_ceiling_page_serves_24_products() -> None:
    with TestClient(app=ceiling.create_app()) as client:
        page = client.get("/products")
    assert page.status_code == 200 and page.text.count('class="product-card"') == 24


def test_wrk_output_is_read_into_figures() -> None:
    result = wrk.parse(WRK_OUTPUT)
    assert result.requests_per_s == 2158.54 and result.requests == 32420
    assert result.p50_ms == 14.10 and result.p99_ms == 1200.0 and result.errors == 7


def test_lua_script_holds_every_request(tmp_path: Path) -> None:
    requests = [wrk.Request("POST", "/cart/items", {"Cookie": "a=b"}, "product_id=1&quantity=1"),
                wrk.Request("GET", "/products?page=2", {})]
    text = wrk.write_script(tmp_path / "s.lua", requests).read_text()
    assert text.count("[===[") == 7 and "function request()" in text


def test_quick_mode_is_short() -> None:
    args = run.parse_args(["--quick"])
    assert (args.duration, args.repeats, args.busy_repeats) == (3, 1, 0)


def _bench_measuring(steals: list[float], busy_repeats: int) -> tuple[run.Bench, run.Figure, list[float]]:
    """A figure measured once by a Bench whose runs see the host take `steals` cores in turn."""
    bench = run.Bench(run.parse_args(["--busy-repeats", str(busy_repeats)]), None, Path())  # type: ignore[arg-type]
    figure, tried = run.Figure("page", "req/s"), []

    def run_once() -> run.Sample:
        steal = steals[len(tried)]
        tried.append(steal)
        return run.Sample(per_s=1000 - 1000 * steal, p50_ms=5, p99_ms=20 + 100 * steal, errors=0, steal_cores=steal)

    bench.measure(figure, run_once)
    return bench, figure, tried


def test_a_run_the_host_disturbed_is_made_again_and_the_quietest_kept() -> None:
    bench, figure, tried = _bench_measuring([0.4, 0.02, 0.5], busy_repeats=16)
    assert tried == [0.4, 0.02] and figure.runs == [980] and figure.steal_cores == [0.02]
    assert figure.repeated == 1 and bench.repeats_left == 15 and "1 run made again: host busy" in figure.line()
    _, figure, tried = _bench_measuring([0.3, 0.4, 0.2, 0.0], busy_repeats=16)
    assert tried == [0.3, 0.4, 0.2] and figure.runs == [800] and figure.repeated == 2  # at most 3 tries a run


def test_a_quiet_run_is_kept_and_the_repeats_have_a_budget() -> None:
    _, figure, tried = _bench_measuring([0.01, 0.9], busy_repeats=16)
    assert tried == [0.01] and figure.repeated == 0 and "made again" not in figure.line()
    _, figure, tried = _bench_measuring([0.3, 0.2, 0.1], busy_repeats=1)
    assert tried == [0.3, 0.2] and figure.runs == [800]
    _, figure, tried = _bench_measuring([0.3, 0.2], busy_repeats=0)
    assert tried == [0.3] and figure.runs == [700] and figure.repeated == 0


@pytest.fixture()
def recording_server() -> Iterator[tuple[str, list[tuple[str, str, str, str, bytes]]]]:
    """An HTTP/1.1 server on 127.0.0.1 that answers 204 and records what it was sent, for wrk
    to load (wrk missing is a failure under CI, where scripts/test installs it)."""
    if shutil.which("wrk") is None:
        if require_all():
            pytest.fail("wrk is not installed")
        pytest.skip("wrk is not installed")
    seen: list[tuple[str, str, str, str, bytes]] = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append((self.command, self.path, self.headers.get("cookie", ""),
                         self.headers.get("x-csrftoken", ""), body))
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_wrk_sends_the_requests_of_its_script(tmp_path: Path, recording_server) -> None:
    """A script wrk cannot load makes it send plain GETs of the URL instead: every figure would
    then measure the home page. The checkout script's POSTs must arrive as written."""
    url, seen = recording_server
    customers = [clients.Customer(cookies={"csrftoken": f"token{n}", "session": f"s{n}"}) for n in range(3)]
    script = wrk.write_script(tmp_path / "checkout.lua", clients.checkout_requests(customers))
    result = wrk.run(url, 1, script, connections=2)
    assert result.requests > 0 and result.errors == 0
    sent = {(method, path, cookie, token) for method, path, cookie, token, _ in seen}
    assert sent == {("POST", "/checkout/", f"csrftoken=token{n}; session=s{n}", f"token{n}") for n in range(3)}
    assert all(b"governorate=hawalli" in body for *_, body in seen)


def test_a_script_wrk_cannot_load_is_an_error(tmp_path: Path, recording_server) -> None:
    url, seen = recording_server
    broken = tmp_path / "broken.lua"
    broken.write_text("requests = {")
    with pytest.raises(RuntimeError, match="wrk"):
        wrk.run(url, 1, broken, connections=2)


def test_the_in_process_caller_serves_pages_and_times_them() -> None:
    import asyncio

    from bench.inprocess import Caller, cpu_per_request

    async def call() -> tuple[int, bytes, float]:
        app = ceiling.create_app()
        async with app.lifespan():
            caller = Caller(app)
            status, body = await caller.request("GET", "/products?page=2")
            return status, body, await cpu_per_request(caller, "/healthz", 5)

    status, body, cpu_us = asyncio.run(call())
    assert status == 200 and body.count(b'class="product-card"') == 24
    assert cpu_us > 0


# Uses `seconds` of CPU, says so, then waits to be stopped (a server is still there when measured).
_BURN = """
import sys, time
while time.process_time() < float(sys.argv[1]):
    pass
print("burnt", flush=True)
if sys.argv[2] == "stay":
    time.sleep(60)
"""


def test_cores_used_counts_a_server_group_and_the_load_generator() -> None:
    server = subprocess.Popen([sys.executable, "-c", _BURN, "0.3", "stay"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", _BURN, "0.3", "stay"], stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
    try:
        started = time.monotonic()
        with procs.cores_used({"shop": server.pid}) as used:
            subprocess.run([sys.executable, "-c", _BURN, "0.2", "go"], check=True, capture_output=True)  # "wrk"
            assert server.stdout.readline() == "burnt\n" and bystander.stdout.readline() == "burnt\n"
        elapsed = time.monotonic() - started
    finally:
        for process in (server, bystander):
            process.kill()
            process.wait()
    assert set(used) == {"shop", "wrk", "PostgreSQL"}
    # CPU is counted in clock ticks (10 ms): each figure is at least its work over the time taken.
    assert used["shop"] >= (0.3 - 0.05) / elapsed and used["wrk"] >= (0.2 - 0.02) / elapsed
    # The bystander's 0.3 s is nobody's: at most the shop's own start-up is counted beside it.
    assert used["shop"] * elapsed < 0.3 + 0.25


def test_a_figure_shows_the_median_cores_each_part_used() -> None:
    figure = run.Figure("list page", "req/s")
    for shop, load in ((1.72, 0.18), (1.68, 0.21), (1.70, 0.19)):
        figure.add(run.Sample(6000, 5, 30, 0, 0.0, {"shop": shop, "wrk": load, "PostgreSQL": 0.1}))
    assert "cores used: shop 1.70, wrk 0.19, PostgreSQL 0.10" in figure.line()
    plain = run.Figure("add to cart", "req/s")
    plain.add(run.Sample(900, 30, 60, 0, 0.0))
    assert "cores used" not in plain.line()
