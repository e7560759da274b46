"""A worker loads what serving needs, not the tooling around it: each of these cost megabytes
of every worker's memory (the benchmark's target is 100 MiB a worker)."""
from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT

NOT_IN_A_WORKER = {
    "rich": "httpx's command-line client",
    "pygments": "httpx's command-line client",
    "black": "Piccolo's migration tooling (AppConfig)",
    "pydantic": "Litestar's pydantic plugin",
}


def test_the_app_leaves_tooling_unloaded() -> None:
    probe = ("import sys, shop.app; shop.app.create_app; "
             f"print(' '.join(name for name in {sorted(NOT_IN_A_WORKER)!r} if name in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert not loaded, {name: NOT_IN_A_WORKER[name] for name in loaded}


def test_httpx_still_works_without_its_command_line_client() -> None:
    import httpx

    import shop  # noqa: F401

    response = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204))).get("http://x/")
    assert response.status_code == 204
