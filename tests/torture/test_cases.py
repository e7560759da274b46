"""Every torture case at CI size must meet every target it prints (the full size runs in
scripts/torture). A case that prints no figure fails: it proved nothing."""
from __future__ import annotations

import pytest

from tests.support import run_async
from torture.harness import Shop
from torture.registry import Registered, all_cases


@pytest.mark.parametrize("registered", all_cases(), ids=lambda registered: registered.name)
def test_case_meets_its_targets(registered: Registered, torture_shop: Shop) -> None:
    figures = run_async(lambda: registered.run(torture_shop))
    assert figures, f"{registered.name} printed no figure"
    missed = [figure.line() for figure in figures if not figure.ok]
    assert not missed, "\n".join(missed)
