"""Finding (or installing) ``wrk`` and reading its report.

``wrk --latency`` prints requests/s and a latency distribution; L{parseWrk} turns
that text into a L{WrkResult}, including the socket errors and non-2xx/3xx answers
that would make a fast figure meaningless.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([0-9.]+)(us|ms|s|m|h)"


class WrkError(Exception):
    """wrk could not be installed, or its output could not be read."""


def ensureWrk() -> str:
    """The path of C{wrk}, installing Debian's package first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise WrkError("wrk is missing and only root can apt-get install it")
    print("bench: wrk not found; installing it with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(install, env=env, capture_output=True, timeout=300)
    if done.returncode != 0:
        update = ["apt-get", "update", "-q"]
        subprocess.run(update, env=env, capture_output=True, timeout=300, check=False)
        done = subprocess.run(install, env=env, capture_output=True, timeout=300)
    found = shutil.which("wrk")
    if done.returncode != 0 or not found:
        tail = done.stderr.decode(errors="replace")[-800:]
        raise WrkError(f"apt-get install wrk failed:\n{tail}")
    return found


@dataclass
class WrkResult:
    """What one wrk run measured; latencies in milliseconds."""

    requestsPerSecond: float
    requests: int
    seconds: float
    p50Ms: float | None
    p75Ms: float | None
    p90Ms: float | None
    p99Ms: float | None
    avgMs: float | None
    maxMs: float | None
    socketErrors: dict[str, int] = field(default_factory=dict)
    non2xx3xx: int = 0

    @property
    def errors(self) -> int:
        """Failed requests of any kind: socket errors and non-2xx/3xx answers."""
        return sum(self.socketErrors.values()) + self.non2xx3xx

    def asDict(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures."""
        return {**asdict(self), "errors": self.errors}


def _ms(value: str, unit: str) -> float:
    """A wrk duration such as C{735.00us} in milliseconds."""
    return float(value) * _UNITS_MS[unit]


def parseWrk(text: str) -> WrkResult:
    """Read the report of C{wrk --latency}."""
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in " + _DURATION, text, re.MULTILINE)
    if rps is None or total is None:
        raise WrkError(f"cannot read wrk output:\n{text[-1500:]}")
    percentiles: dict[str, float] = {}
    for pct, value, unit in re.findall(
        r"^\s+(50|75|90|99)%\s+" + _DURATION, text, re.MULTILINE
    ):
        percentiles[pct] = _ms(value, unit)
    latency = re.search(
        r"^\s+Latency\s+" + _DURATION + r"\s+\S+\s+" + _DURATION, text, re.MULTILINE
    )
    socketErrors: dict[str, int] = {}
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if errors:
        names = ("connect", "read", "write", "timeout")
        socketErrors = {n: int(v) for n, v in zip(names, errors.groups(), strict=True)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        requestsPerSecond=float(rps.group(1)),
        requests=int(total.group(1)),
        seconds=_ms(total.group(2), total.group(3)) / 1000.0,
        p50Ms=percentiles.get("50"),
        p75Ms=percentiles.get("75"),
        p90Ms=percentiles.get("90"),
        p99Ms=percentiles.get("99"),
        avgMs=_ms(latency.group(1), latency.group(2)) if latency else None,
        maxMs=_ms(latency.group(3), latency.group(4)) if latency else None,
        socketErrors=socketErrors,
        non2xx3xx=int(non2xx.group(1)) if non2xx else 0,
    )


def wrkCommand(
    wrk: str,
    port: int,
    seconds: float,
    connections: int,
    threads: int = 1,
    path: str = "/",
) -> list[str]:
    """The wrk command line for a run against 127.0.0.1:C{port}C{path}."""
    return [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]
