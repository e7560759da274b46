"""python -m torture [--backend sqlite|postgres|both] [--scale 1.0] [--case NAME ...]

Runs every case against a real shop on each backend and prints one line per figure;
exits 1 if any figure misses its target."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import ExitStack
from dataclasses import replace

from tests.support import throwaway_postgres
from torture.harness import running_shop
from torture.registry import all_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torture", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="loop sizes relative to the full run")
    parser.add_argument("--case", action="append", default=[], help="run only these cases (repeatable)")
    args = parser.parse_args(argv)

    cases = [c for c in all_cases() if not args.case or c.name in args.case]
    if not cases:
        parser.error(f"no such case; known: {', '.join(c.name for c in all_cases())}")
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    failed = total = 0
    started = time.monotonic()
    with ExitStack() as stack:
        admin_url = stack.enter_context(throwaway_postgres()) if "postgres" in backends else None
        for backend in backends:
            with running_shop(backend, args.scale, admin_url) as shop:
                print(f"# {backend}: {shop.workers} worker(s) at {shop.base_url}, scale {args.scale:g}", flush=True)
                for registered in cases:
                    case_started = time.monotonic()
                    figures = asyncio.run(registered.run(shop))
                    for figure in figures:
                        total += 1
                        failed += not figure.ok
                        print(replace(figure, backend=backend).line(), flush=True)
                    print(f"#   {registered.name} took {time.monotonic() - case_started:.1f} s", flush=True)
    print(f"# {total - failed} of {total} figures met their targets in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
