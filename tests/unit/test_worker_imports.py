"""A worker loads what serving needs, not the tooling around it: each of these cost megabytes
of every worker's memory (the benchmark's target is 100 MiB a worker)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, fresh_database, run_shop, serving

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


def test_no_process_of_a_server_loads_the_file_watcher(tmp_path: Path) -> None:
    """uvicorn's reload supervisor imports watchfiles, when installed, in the server and in each
    spawned worker; the shop does not install it (pyproject.toml)."""
    with fresh_database("sqlite", tmp_path) as url:
        run_shop(url, "migrate")
        with serving(url, workers=2) as served:
            group = subprocess.run(["ps", "-o", "pid=", "-g", str(os.getpgid(served.process.pid))],
                                   capture_output=True, text=True, check=True).stdout.split()
            assert len(group) >= 3  # uvicorn's supervisor and its 2 workers
            with_watcher = [pid for pid in group if "watchfiles" in Path(f"/proc/{pid}/maps").read_text()]
    assert not with_watcher, "watchfiles is loaded: the shop does not depend on it (pip uninstall watchfiles)"


def test_httpx_still_works_without_its_command_line_client() -> None:
    import httpx

    import shop  # noqa: F401

    response = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204))).get("http://x/")
    assert response.status_code == 204
