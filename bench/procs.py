"""Processes the benchmark starts: the ceiling server, and memory read from /proc."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support import Served, free_port, serving_command


@contextmanager
def ceiling_server(server: str) -> Iterator[Served]:
    """The ceiling app under the same server and settings `shop serve` uses, one worker."""
    port = free_port()
    command = [sys.executable, "-c", "from shop.cli import run_server; "
               f"run_server('bench.ceiling:create_app', {server!r}, '127.0.0.1', {port}, 1)"]
    with serving_command(command, port, Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ceiling-{port}.log") as served:
        yield served


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mib: float
    peak_mib: float


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _processes() -> dict[int, tuple[str, int, float]]:
    """Each process's name, process group and CPU seconds so far (user and system), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    seen = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd: state, ppid, pgrp, ...
        seen[int(entry.name)] = (name, int(fields[2]), (int(fields[11]) + int(fields[12])) / tick)
    return seen


def worker_memory(leader_pid: int) -> list[Memory]:
    """RSS now and peak RSS of each worker of a server: the group's processes, without a
    supervisor that only forks workers (the leader, when it has children)."""
    members = [pid for pid, (_, group, _) in _processes().items() if group == leader_pid
               and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]  # multiprocessing's helper
    workers = [pid for pid in members if pid != leader_pid] or [leader_pid]
    memory = []
    for pid in workers:
        try:
            status = _status(pid)
        except OSError:
            continue
        memory.append(Memory(int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024))
    return memory


def _finished_children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


@contextmanager
def cores_used(groups: dict[str, int]) -> Iterator[dict[str, float]]:
    """Cores used while the block runs: by each named process group (a server's leader pid),
    by PostgreSQL, and by the load generator (this process's children that finished meanwhile:
    wrk, run to completion inside the block). Filled in when the block ends."""
    used: dict[str, float] = {}
    before, children_before, started = _processes(), _finished_children_cpu(), time.monotonic()
    yield used
    after, elapsed = _processes(), time.monotonic() - started
    roles = {leader: role for role, leader in groups.items()}
    totals = dict.fromkeys([*groups, "wrk", "PostgreSQL"], 0.0)
    totals["wrk"] = _finished_children_cpu() - children_before
    for pid, (name, group, cpu) in after.items():
        role = roles.get(group) or ("PostgreSQL" if name == "postgres" else None)
        if role is not None:
            # A process that started during the block counts from zero.
            totals[role] += cpu - (before[pid][2] if pid in before and before[pid][1] == group else 0.0)
    used.update({role: cpu / elapsed for role, cpu in totals.items()})
