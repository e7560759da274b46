"""The torture cases at CI size: a real shop per backend (2 workers on PostgreSQL)."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import BACKENDS, _check_backend
from torture.harness import Shop, running_shop

CI_SCALE = 0.05


@pytest.fixture(scope="session", params=BACKENDS)
def torture_shop(request: pytest.FixtureRequest) -> Iterator[Shop]:
    _check_backend(request.param)
    with running_shop(request.param, CI_SCALE) as shop:
        yield shop
