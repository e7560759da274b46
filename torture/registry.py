"""Cases register themselves with @case; the runner and the CI test find every module in torture/."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from torture.harness import Case

_CASES: dict[str, "Registered"] = {}


@dataclass(frozen=True)
class Registered:
    name: str
    run: Case
    order: int  # lower runs first; scans of logs and database run last (order >= 100)


def case(name: str, order: int = 50):
    """Register `async def run(shop: Shop) -> list[Figure]` under `name`."""
    def register(run: Case) -> Case:
        if name in _CASES:
            raise ValueError(f"torture case {name!r} registered twice")
        _CASES[name] = Registered(name, run, order)
        return run
    return register


def all_cases() -> list[Registered]:
    import torture

    for module in pkgutil.iter_modules(torture.__path__):
        if module.name not in {"__main__", "registry", "harness", "figures"}:
            importlib.import_module(f"torture.{module.name}")
    return sorted(_CASES.values(), key=lambda registered: (registered.order, registered.name))
