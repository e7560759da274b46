"""A figure: one measured number, the target it must meet, and whether it met it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    case: str
    name: str
    value: float
    target: str  # human-readable, e.g. "= 5", "<= 0", ">= 20000"
    ok: bool
    backend: str = ""

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        value = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        where = f"[{self.backend}] " if self.backend else ""
        return f"{verdict}  {where}{self.case}: {self.name} = {value} (target {self.target})"


def exactly(case: str, name: str, value: float, expected: float) -> Figure:
    return Figure(case, name, value, f"= {expected:g}", value == expected)


def at_most(case: str, name: str, value: float, limit: float) -> Figure:
    return Figure(case, name, value, f"<= {limit:g}", value <= limit)


def at_least(case: str, name: str, value: float, floor: float) -> Figure:
    return Figure(case, name, value, f">= {floor:g}", value >= floor)
