"""Browser tests: a real `shop serve` process and the system's headless Chromium."""
from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from tests.support import live_server, require_all

CHROMIUM = os.environ.get("SHOP_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking switches Chromium keeps dialling out of a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, object]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"no Chromium at {CHROMIUM}: browser tests cannot run"
        if require_all():
            pytest.fail(message)
        pytest.skip(message)
    return {"executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def shop_url(database_url: str) -> Iterator[str]:
    with live_server(database_url) as url:
        yield url
