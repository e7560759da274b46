"""python -m tests.with_postgres [pytest args]: pytest with a throwaway PostgreSQL server of its
own (unless SHOP_TEST_POSTGRES_URL already names one, or PostgreSQL is not installed, in which
case its suites skip, and fail under CI=true)."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

from tests.support import POSTGRES_ENV, throwaway_postgres


def main(args: list[str]) -> int:
    installed = any(Path("/usr/lib/postgresql").glob("*/bin"))
    server = throwaway_postgres() if os.environ.get(POSTGRES_ENV) or installed else nullcontext(None)
    with server as admin_url:
        env = {**os.environ, **({POSTGRES_ENV: admin_url} if admin_url else {})}
        return subprocess.run([sys.executable, "-m", "pytest", *args], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
