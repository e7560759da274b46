"""Fixtures: each test session migrates and seeds a fresh SQLite and a fresh PostgreSQL database."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.settings import Settings
from tests.support import POSTGRES_ENV, TEST_SECRET, fresh_database, require_all, run_shop

BACKENDS = ("sqlite", "postgres")


def _check_backend(kind: str) -> None:
    if kind == "postgres" and not os.environ.get(POSTGRES_ENV):
        message = f"{POSTGRES_ENV} is not set: no PostgreSQL to test against"
        if require_all():
            pytest.fail(message)
        pytest.skip(message)


def migrated_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new database of the requested backend, migrated and holding the demo catalogue."""
    _check_backend(request.param)
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        run_shop(url, "migrate")
        run_shop(url, "seed")
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Shared by the tests of one backend that keep the demo catalogue as it is."""
    yield from migrated_database(request, tmp_path_factory)


def test_settings(database_url: str, **changes: object) -> Settings:
    # Port 9 (discard) refuses connections: in-process tests see the provider as down.
    settings = Settings(
        env="test", database_url=database_url, secret_key=TEST_SECRET, db_pool_size=0, page_size=24,
        public_url="http://127.0.0.1:9", reconcile_interval_s=0,
    )
    return settings.with_(**changes) if changes else settings


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return test_settings(database_url)


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    """A browser-like client with its own cookies (session, CSRF, language)."""
    with TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shop")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test is a suite that did not run: fail the run instead of passing it."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if require_all() and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; every suite must run under CI=true", red=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    until the session ends, which the asyncio tests cannot share."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)
