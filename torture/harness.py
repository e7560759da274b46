"""Real shops to torture: `shop serve` processes on SQLite or PostgreSQL with their sandboxes."""
from __future__ import annotations

import secrets
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterator

from tests.support import fresh_database, live_server, run_shop

from torture.figures import Figure

PROVIDERS = ("checkout", "checkout_setup", "aps", "tap", "upayments", "knet")
PROVIDER_TIMEOUT_S = 2  # the shop gives up on a provider call after this long (its sandbox shares the load)
RECONCILE_INTERVAL_S = 2  # seconds between the shop's reconciliation passes


@dataclass
class Shop:
    """One running shop. `scale` is 1.0 for the full script and small (e.g. 0.05) in CI;
    cases size their loops with `shop.scaled(n)`."""

    backend: str  # "sqlite" or "postgres"
    database_url: str
    base_url: str
    workers: int
    log_path: Path
    scale: float
    work_dir: Path  # the shop's own folder (database, logs, media), removed afterwards
    # Catalogue products a case has taken for itself, so cases never share stock.
    claimed_products: set[int] = field(default_factory=set)

    def scaled(self, n: int, minimum: int = 1) -> int:
        return max(minimum, round(n * self.scale))


Case = Callable[[Shop], Awaitable[list[Figure]]]


@contextmanager
def running_shop(backend: str, scale: float, postgres_admin_url: str | None = None, workers: int | None = None,
                 **extra_env: str) -> Iterator[Shop]:
    """A migrated, seeded database and `shop serve` over it: 2 workers on PostgreSQL, 1 on SQLite
    (SQLite has one writer). Sandboxes on, reconciliation every 2 s so cases can wait for it."""
    workers = workers or (2 if backend == "postgres" else 1)
    with tempfile.TemporaryDirectory(prefix=f"shop-torture-{backend}-") as tmp_name, \
            fresh_database(backend, Path(tmp_name), postgres_admin_url) as database_url:
        tmp = Path(tmp_name)
        run_shop(database_url, "migrate")
        run_shop(database_url, "seed")
        log_path = tmp / f"shop-{secrets.token_hex(3)}.log"
        env = {"SHOP_PROVIDER_TIMEOUT_S": str(PROVIDER_TIMEOUT_S),
               "SHOP_RECONCILE_INTERVAL_S": str(RECONCILE_INTERVAL_S), "SHOP_MEDIA_DIR": str(tmp / "media"),
               **extra_env}
        with live_server(database_url, workers=workers, log_path=log_path, **env) as base_url:
            yield Shop(backend, database_url, base_url, workers, log_path, scale, tmp)
