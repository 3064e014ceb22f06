"""Child processes for the benchmark: start pinned, wait for, measure, always stop.

Every child gets its own process group (so stopping it stops anything it started)
and asks the kernel to kill it if the benchmark itself dies (``PR_SET_PDEATHSIG``),
so an interrupted run leaves nothing behind. L{Children} stops whatever is still
running when its ``with`` block ends, on success, exception or Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


def _pause(seconds: float) -> None:
    """Sleep between polls of another process, which has no Deferred to wait on."""
    time.sleep(seconds)  # noqa: TID251


class ChildError(Exception):
    """A child process did not come up, or died, or overran its time."""


def _dieWithParent(parentPid: int) -> None:
    """In the child before exec: get SIGKILL when the benchmark process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parentPid:  # the parent died before prctl took effect
        os._exit(1)


def pinning() -> tuple[bool, str]:
    """Whether children can be pinned to CPUs 0 and 1, and why not if they can't."""
    if shutil.which("taskset") is None:
        return False, "taskset not found"
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        return False, f"CPUs 0 and 1 are not both available (have {sorted(cpus)})"
    return True, ""


@dataclass
class Child:
    """One started process, its output file and what is known about it."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last C{lines} lines of the child's output."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Start children pinned to CPUs, and stop every one of them at the end."""

    def __init__(self, logDir: Path, pin: bool) -> None:
        self._logDir = logDir
        self._pin = pin
        self._children: list[Child] = []
        logDir.mkdir(parents=True, exist_ok=True)

    @property
    def pinned(self) -> bool:
        """Whether children are pinned to the CPUs asked for."""
        return self._pin

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopAll()

    def start(
        self,
        name: str,
        argv: list[str],
        cpu: int | None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start C{argv} (on C{cpu} if pinning), its output going to a log file."""
        if self._pin and cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        log = self._logDir / f"{name}.log"
        childEnv = dict(os.environ)
        childEnv["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [childEnv.get("PYTHONPATH")])]
        )
        childEnv.update(env or {})
        parentPid = os.getpid()
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd or ROOT,
                env=childEnv,
                start_new_session=True,
                preexec_fn=lambda: _dieWithParent(parentPid),
            )
        child = Child(name, process, log, argv)
        self._children.append(child)
        return child

    def stop(self, child: Child, grace: float = 5.0) -> int | None:
        """Stop C{child} and its process group: SIGTERM, then SIGKILL after C{grace}."""
        process = child.process
        if process.poll() is None:
            _signalGroup(child.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                _signalGroup(child.pid, signal.SIGKILL)
                process.wait(grace)
        # Anything the child started in its group that outlived it.
        _signalGroup(child.pid, signal.SIGKILL)
        if child in self._children:
            self._children.remove(child)
        return process.returncode

    def stopAll(self) -> None:
        """Stop every child still known, most recent first."""
        for child in reversed(list(self._children)):
            try:
                self.stop(child, grace=3.0)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"bench: could not stop {child.name}: {e!r}", file=sys.stderr)

    def run(
        self, name: str, argv: list[str], cpu: int | None, timeout: float
    ) -> tuple[int, str]:
        """Run C{argv} to completion (killed after C{timeout}); exit code, output."""
        child = self.start(name, argv, cpu)
        try:
            code = child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(child)
            raise ChildError(f"{name} did not finish within {timeout:.0f} s") from None
        self.stop(child)
        return code, child.log.read_text(errors="replace")


def _signalGroup(pgid: int, sig: signal.Signals) -> None:
    """Send C{sig} to a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def waitForPortFile(child: Child, path: Path, timeout: float = 15.0) -> int:
    """The port C{child} writes to C{path} once it listens."""
    for _ in range(int(timeout / 0.05)):
        if path.exists():
            text = path.read_text().strip()
            if text:
                return int(text)
        if not child.alive():
            raise ChildError(f"{child.name} exited early:\n{child.tail()}")
        _pause(0.05)
    raise ChildError(f"{child.name} did not announce a port in {timeout:.0f} s")


def waitForListener(child: Child, port: int, timeout: float = 20.0) -> None:
    """Return once 127.0.0.1:C{port} accepts a connection; fail if C{child} dies."""
    for _ in range(int(timeout / 0.05)):
        if not child.alive():
            raise ChildError(f"{child.name} exited early:\n{child.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            _pause(0.05)
    raise ChildError(
        f"{child.name} did not accept on port {port} in {timeout:.0f} s:\n"
        f"{child.tail()}"
    )


def statusKb(pid: int, field: str) -> int | None:
    """A C{kB} figure (such as C{VmRSS} or C{VmHWM}) from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpuSeconds(pid: int) -> float | None:
    """User plus system CPU time used so far by C{pid}."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class RSSSampler:
    """Poll a process's resident set size in a thread and keep the largest seen."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.peakKb = 0

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            rss = statusKb(self._pid, "VmRSS")
            if rss is None:
                return
            self.peakKb = max(self.peakKb, rss)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(2.0)


def cpuTimes() -> dict[int, tuple[float, float]]:
    """Busy and total seconds so far for each CPU, from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    times: dict[int, tuple[float, float]] = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, _, rest = line.partition(" ")
                if not name.startswith("cpu") or name == "cpu":
                    continue
                values = [int(v) for v in rest.split()]
                idle = values[3] + (values[4] if len(values) > 4 else 0)
                total = sum(values[:8])
                times[int(name[3:])] = ((total - idle) / ticks, total / ticks)
    except (OSError, ValueError):
        return {}
    return times


def busyShares(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> dict[int, float]:
    """How busy each CPU was between two L{cpuTimes} readings (0 to 1)."""
    shares: dict[int, float] = {}
    for cpu, (busyAfter, totalAfter) in after.items():
        if cpu not in before:
            continue
        busyBefore, totalBefore = before[cpu]
        if totalAfter > totalBefore:
            shares[cpu] = (busyAfter - busyBefore) / (totalAfter - totalBefore)
    return shares


def portforwardCommand(twistd: str, port: int, destinationPort: int) -> list[str]:
    """Twisted's own byte relay (C{twistd portforward}) in front of a port."""
    return [
        twistd,
        "-n",
        "--pidfile=",
        "portforward",
        "--port",
        f"tcp:{port}:interface=127.0.0.1",
        "--host",
        "127.0.0.1",
        "--dest_port",
        str(destinationPort),
    ]
