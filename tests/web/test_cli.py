"""The `shop` command on both databases: migrate and seed are repeatable; production refuses unsafe settings."""
import os
import subprocess
import sys

import pytest

from shop.catalog import demo_data
from tests.conftest import BACKENDS, _check_backend
from tests.support import ROOT, fresh_database, run_shop


@pytest.mark.parametrize("kind", BACKENDS)
def test_migrate_and_seed_twice_change_nothing_the_second_time(kind: str, tmp_path) -> None:
    _check_backend(kind)
    with fresh_database(kind, tmp_path) as url:
        run_shop(url, "migrate")
        again = run_shop(url, "migrate")
        assert again.returncode == 0
        first = run_shop(url, "seed")
        assert f"seeded {len(demo_data.CATEGORIES)} categories and {len(demo_data.PRODUCTS)} products" in first.stdout
        second = run_shop(url, "seed")
        assert "seeded 0 categories and 0 products" in second.stdout


def test_seeding_keeps_staff_changes(database_url: str) -> None:
    """Re-running the seed on a live shop must not reset prices or stock that staff changed."""
    from tests.web.conftest import run
    from shop.app import create_app
    from shop.catalog.tables import Product
    from tests.conftest import test_settings

    create_app(test_settings(database_url))  # binds the tables to this database
    slug = demo_data.PRODUCTS[-1]["slug"]
    run(Product.update({Product.price_fils: 123450}).where(Product.slug == slug))
    run_shop(database_url, "seed")
    assert run(Product.select(Product.price_fils).where(Product.slug == slug).first())["price_fils"] == 123450
    assert run(Product.count()) == len(demo_data.PRODUCTS)


def test_production_refuses_sandbox_and_missing_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(SHOP_ENV="production", SHOP_SANDBOX="1")
    result = subprocess.run(
        [sys.executable, "-m", "shop", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "SHOP_SECRET_KEY" in result.stderr and "SHOP_SANDBOX" in result.stderr


def test_demo_is_refused_in_production() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(SHOP_ENV="production", SHOP_SANDBOX="0", SHOP_SECRET_KEY="k" * 40, SHOP_PUBLIC_URL="https://x.example")
    result = subprocess.run(
        [sys.executable, "-m", "shop", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
