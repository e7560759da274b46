"""The benchmark stays runnable: it imports, its ceiling page serves, its wrk parsing holds."""
from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from bench import ceiling, run, wrk

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
    assert (args.duration, args.repeats) == (3, 1)
