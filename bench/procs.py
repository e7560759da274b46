"""Processes the benchmark starts: the ceiling server, and memory read from /proc."""
from __future__ import annotations

import os
import sys
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


def worker_memory(leader_pid: int) -> list[Memory]:
    """RSS now and peak RSS of each worker of a server: the group's processes, without a
    supervisor that only forks workers (the leader, when it has children)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader_pid:  # field 5 of stat: the process group
            if b"resource_tracker" not in (entry / "cmdline").read_bytes():  # multiprocessing's helper
                members.append(int(entry.name))
    workers = [pid for pid in members if pid != leader_pid] or [leader_pid]
    memory = []
    for pid in workers:
        try:
            status = _status(pid)
        except OSError:
            continue
        memory.append(Memory(int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024))
    return memory
