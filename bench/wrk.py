"""wrk on 127.0.0.1 with fixed settings, and the Lua scripts that give it many distinct requests."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

THREADS = 2
CONNECTIONS = 32
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

# Requests are formatted once per thread; each thread then walks the list from its own offset,
# so two threads never send the same request at the same moment (webhook event ids stay apart).
_LUA_RUNNER = """
local formatted = {}
local n, step = 0, 1
local counter = 0
function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
function init(args)
  step = tonumber(args[1]) or 1
  n = offset or 0
  for i, r in ipairs(requests) do
    formatted[i] = wrk.format(r[1], r[2], r[3], r[4])
  end
end
function request()
  local r = formatted[(n % #formatted) + 1]
  n = n + step
  return r
end
"""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus responses that were not 2xx/3xx


def _lua_string(text: str) -> str:
    level = "=" * 3
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def write_script(path: Path, requests: Sequence[Request]) -> Path:
    """A Lua script that cycles through `requests` (each with its own cookies, body, headers)."""
    lines = ["requests = {"]
    for r in requests:
        # "[ [===[" with spaces: "[[" would open a Lua long string.
        headers = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in r.headers.items())
        body = _lua_string(r.body) if r.body is not None else "nil"
        lines.append(f"  {{{_lua_string(r.method)}, {_lua_string(r.path)}, {{{headers}}}, {body}}},")
    lines.append("}")
    path.write_text("\n".join(lines) + _LUA_RUNNER, encoding="utf-8")
    return path


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(rps, p50, p99, total, errors + (int(non_ok.group(1)) if non_ok else 0))


def run(url: str, duration_s: int, script: Path | None = None, connections: int = CONNECTIONS) -> WrkResult:
    """One wrk run against `url` (127.0.0.1 only), bounded by `duration_s` plus a grace period."""
    assert url.startswith("http://127.0.0.1:"), "load only 127.0.0.1"
    command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    command += [url, "--", str(THREADS)] if script is not None else [url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 30, check=True)
    if done.stderr.strip():  # a script wrk cannot load is reported here, and wrk then sends GET url instead
        raise RuntimeError(f"wrk: {done.stderr.strip()}")
    return parse(done.stdout)
