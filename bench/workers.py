"""The workers part of ``python -m bench``: one twisted-proxy process against two.

twisted-proxy runs with C{[proxy] workers = 1}, then with C{workers = 2} (the
process twistd starts, the I{owner}, binds the port and starts the other
worker as its child; both serve the same listening port), in front of one
Debian nginx answering every request with the fast backend's small body
(L{bench.backend.BODY}; nginx costs the least CPU per request of the backends
at hand, which leaves the most for the proxy). C{wrk -t1 -c50 --latency}
for the same time as the throughput part, after the same warm-up. Nothing is
pinned: the workers need every CPU, and wrk and nginx share them.

For each run: requests/s, p99, and the CPU seconds used during the measured
wrk run by the proxy's whole process tree (the owner and every descendant,
read from C{/proc/PID/stat} before and after while they are all alive), by
wrk (read from its C{stat} once it has exited and before it is reaped), and
by nginx. Each as a share of the machine's CPU time in the same interval (all
CPUs), so the load generator's share is stated, not hidden. Requests per proxy
CPU-second says what a request costs; with two workers it should cost about
the same as with one (L{CPU_EFFICIENCY_TARGET}). The CPU of each process in the
tree shows whether the second worker served its part.

With the CPU, the context switches of every process of the proxy's tree
(C{voluntary_ctxt_switches} and C{nonvoluntary_ctxt_switches} of
C{/proc/PID/status}, read at the same moments), per request: I{sleeps} (the
process waited for something) and I{preempts} (the scheduler took the CPU from
a process that could still run). One worker has a core to itself while wrk and
nginx share the other; two workers share both cores with them, and a request
costs more CPU when its worker is preempted in the middle of it.

How much of that is the machine's and how much the proxy's: the reference
rows run nginx itself as the proxy (a master and 1, then 2 worker processes,
an upstream keep-alive pool) in front of the same backend, with the same wrk
runs, measured the same way (its master is the root of the tree), in the same
rounds. nginx's own 2w/1w ratios stand next to twisted-proxy's, and
twisted-proxy's req/CPU-s ratio over nginx's says what is left once the
machine's part is taken out.

Run as part of ``python -m bench`` or alone with C{--workers-only}; the
figures also go to C{bench/results/workers.json}.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from bench import backend
from bench._procs import (
    Child,
    ChildError,
    Children,
    cpuTimes,
    freePort,
    waitForListener,
)
from bench.nginx import (
    nginxCommand,
    oneProcessConfig,
    processesConfig,
    proxyBlock,
)
from bench.tls import ensureTool, twistd
from bench.wrk import WrkError, WrkResult, ensureWrk, parseWrk, wrkCommand

# Requests per proxy CPU-second with two workers over one: at least this.
CPU_EFFICIENCY_TARGET = 0.9
WORKER_COUNTS = (1, 2)
# The role of an nginx proxy's root process, which serves no request.
MASTER = "master"
# A worker with less than this share of the tree's CPU served (next to) nothing.
IDLE_WORKER_SHARE = 0.1
# Other processes taking more than this share of the machine make a run suspect.
OTHER_SHARE_WARNING = 0.1
# How long the owner may take to have every worker up and listening.
_WORKERS_TIMEOUT = 30.0
_POLL = 0.02
_LISTEN_STATE = "0A"
_ESTABLISHED_STATE = "01"


def _pause(seconds: float) -> None:
    """Sleep between polls of another process, which has no Deferred to wait on."""
    time.sleep(seconds)  # noqa: TID251


@dataclass(frozen=True)
class WorkersSettings:
    """How long and how hard to run each worker count."""

    seconds: float
    warmup: float
    connections: int = 50
    counts: tuple[int, ...] = WORKER_COUNTS
    rounds: int = 1
    # nginx as the proxy with the same counts, the same way: the reference.
    reference: bool = True


# -- /proc ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """What the benchmark reads from one C{/proc/PID/stat} line; times in ticks."""

    pid: int
    name: str
    state: str
    ppid: int
    utime: int
    stime: int
    starttime: int
    # From C{/proc/PID/status} (L{parseStatus}), when it could be read: the
    # context switches so far (main thread's) and the number of threads.
    voluntary: int | None = None
    nonvoluntary: int | None = None
    threads: int | None = None

    @property
    def ticks(self) -> int:
        """User plus system CPU time so far, in clock ticks."""
        return self.utime + self.stime

    @property
    def key(self) -> tuple[int, int]:
        """The process's identity: its pid and start time (pids get reused)."""
        return self.pid, self.starttime


def parseStat(line: str) -> ProcStat:
    """Read one C{/proc/PID/stat} line.

    The name (field 2) is between the first C{(} and the B{last} C{)}: it may
    hold spaces and parentheses of its own. Raises C{ValueError} on a line that
    is not one.
    """
    head, paren, rest = line.partition("(")
    name, close, tail = rest.rpartition(")")
    if not paren or not close:
        raise ValueError(f"not a /proc stat line: {line[:80]!r}")
    fields = tail.split()
    if len(fields) < 20:
        raise ValueError(f"too few fields in a /proc stat line: {line[:80]!r}")
    # fields[0] is field 3 of proc(5): state, ppid, ... utime (14), stime (15),
    # ... starttime (22).
    return ProcStat(
        pid=int(head),
        name=name,
        state=fields[0],
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        starttime=int(fields[19]),
    )


@dataclass(frozen=True)
class ProcStatus:
    """What the benchmark reads from one C{/proc/PID/status}; C{None}: absent.

    The switch counts are the main thread's (the kernel's C{nvcsw} and
    C{nivcsw} of that task alone); hence C{threads}, to say when they are not
    the whole process's.
    """

    voluntary: int | None
    nonvoluntary: int | None
    threads: int | None


_STATUS_FIELDS = {
    "voluntary_ctxt_switches": "voluntary",
    "nonvoluntary_ctxt_switches": "nonvoluntary",
    "Threads": "threads",
}


def parseStatus(text: str) -> ProcStatus:
    """Read the context switches and thread count of a C{/proc/PID/status}.

    C{voluntary_ctxt_switches}: the process gave up the CPU (waited for
    something, e.g. in C{epoll_wait}); C{nonvoluntary_ctxt_switches}: the
    scheduler took the CPU from it while it could still run (preempted). A
    field missing or unreadable is C{None}.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        field = _STATUS_FIELDS.get(name.strip()) if colon else None
        if field is None:
            continue
        try:
            values[field] = int(value.strip())
        except ValueError:
            continue
    return ProcStatus(
        voluntary=values.get("voluntary"),
        nonvoluntary=values.get("nonvoluntary"),
        threads=values.get("threads"),
    )


class ProcReader(Protocol):
    """Where the process table comes from (C{/proc}, or a fake in tests)."""

    def pids(self) -> Iterable[int]:
        """Every process id there is now."""

    def stat(self, pid: int) -> str | None:
        """The C{stat} line of C{pid}; C{None} if it is gone."""

    def status(self, pid: int) -> str | None:
        """The C{status} text of C{pid}; C{None} if it is gone."""


class LiveProc:
    """The real C{/proc}."""

    def __init__(self, root: Path = Path("/proc")) -> None:
        self._root = root

    def pids(self) -> list[int]:
        """Every numeric entry of C{/proc}."""
        try:
            return [int(n) for n in os.listdir(self._root) if n.isdigit()]
        except OSError:
            return []

    def stat(self, pid: int) -> str | None:
        """C{/proc/PID/stat}, or C{None} if the process has gone."""
        return self._read(pid, "stat")

    def status(self, pid: int) -> str | None:
        """C{/proc/PID/status}, or C{None} if the process has gone."""
        return self._read(pid, "status")

    def _read(self, pid: int, name: str) -> str | None:
        try:
            return (self._root / str(pid) / name).read_text()
        except OSError:
            return None


TreeSample = dict[tuple[int, int], ProcStat]
"""The processes of one tree at one moment, by L{ProcStat.key}."""


def treeSample(root: int, reader: ProcReader) -> TreeSample:
    """C{root} and every process descended from it, as they are now.

    Reads the whole process table once and follows parent ids down from
    C{root}, then the C{status} of each process of the tree (its context
    switches; left C{None} if it cannot be read). Empty if C{root} is gone.
    """
    byPid: dict[int, ProcStat] = {}
    for pid in reader.pids():
        line = reader.stat(pid)
        if line is None:
            continue
        try:
            byPid[pid] = parseStat(line)
        except ValueError:
            continue
    if root not in byPid:
        return {}
    children: dict[int, list[int]] = {}
    for stat in byPid.values():
        if stat.pid != root:
            children.setdefault(stat.ppid, []).append(stat.pid)
    sample: TreeSample = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        stat = byPid[pid]
        if stat.key in sample:
            continue
        sample[stat.key] = _withStatus(stat, reader.status(pid))
        pending.extend(children.get(pid, []))
    return sample


def _withStatus(stat: ProcStat, text: str | None) -> ProcStat:
    """C{stat} with what C{text} (its C{status}) says, if anything."""
    if text is None:
        return stat
    status = parseStatus(text)
    return replace(
        stat,
        voluntary=status.voluntary,
        nonvoluntary=status.nonvoluntary,
        threads=status.threads,
    )


@dataclass(frozen=True)
class TreeCpu:
    """CPU seconds a process tree used between two samples."""

    seconds: float
    # (pid, name, seconds, whether it is the root), the root first.
    processes: list[tuple[int, str, float, bool]]
    # Processes of the first sample missing from the second: what they used
    # since the first is not counted.
    gone: int


def treeCpu(
    before: TreeSample, after: TreeSample, root: int, ticksPerSecond: float
) -> TreeCpu:
    """The CPU time the tree used from C{before} to C{after}.

    A process in C{after} only (started in between) counts all its time.
    """
    processes: list[tuple[int, str, float, bool]] = []
    for key, stat in after.items():
        earlier = before.get(key)
        ticks = stat.ticks - (earlier.ticks if earlier else 0)
        processes.append(
            (stat.pid, stat.name, ticks / ticksPerSecond, stat.pid == root)
        )
    processes.sort(key=lambda p: (not p[3], p[0]))
    gone = sum(1 for key in before if key not in after)
    return TreeCpu(sum(p[2] for p in processes), processes, gone)


@dataclass(frozen=True)
class TreeSwitches:
    """Context switches a process tree made between two samples."""

    voluntary: int
    nonvoluntary: int
    # pid -> (voluntary, nonvoluntary) of each process counted.
    processes: dict[int, tuple[int, int]]
    # Processes of the second sample whose counts could not be read (in either
    # sample): left out of the sums.
    unknown: int
    # The most threads any process of the second sample had (0: unknown): with
    # more than one, the counts are the main threads' only.
    threads: int


def treeSwitches(before: TreeSample, after: TreeSample) -> TreeSwitches:
    """The context switches the tree made from C{before} to C{after}.

    As L{treeCpu}: a process in C{after} only counts all of its switches, one
    gone by C{after} is not counted.
    """
    processes: dict[int, tuple[int, int]] = {}
    unknown = 0
    for key, stat in after.items():
        earlier = before.get(key)
        if stat.voluntary is None or stat.nonvoluntary is None:
            unknown += 1
            continue
        if earlier is None:
            processes[stat.pid] = (stat.voluntary, stat.nonvoluntary)
        elif earlier.voluntary is None or earlier.nonvoluntary is None:
            unknown += 1
        else:
            processes[stat.pid] = (
                stat.voluntary - earlier.voluntary,
                stat.nonvoluntary - earlier.nonvoluntary,
            )
    return TreeSwitches(
        voluntary=sum(v for v, _ in processes.values()),
        nonvoluntary=sum(n for _, n in processes.values()),
        processes=processes,
        unknown=unknown,
        threads=max((s.threads or 0 for s in after.values()), default=0),
    )


def listeningInodes(netTcp: str, port: int) -> set[int]:
    """The inodes of the sockets listening on C{port}, from C{/proc/net/tcp}.

    Lines that are no socket's (the heading) are skipped, so the text of
    C{/proc/net/tcp6} may follow.
    """
    return _inodes(netTcp, port, _LISTEN_STATE)


def connectedInodes(netTcp: str, port: int) -> set[int]:
    """The inodes of the connections accepted on C{port}, from C{/proc/net/tcp}."""
    return _inodes(netTcp, port, _ESTABLISHED_STATE)


def _inodes(netTcp: str, port: int, state: str) -> set[int]:
    """The inodes of the sockets in C{state} whose local port is C{port}."""
    inodes: set[int] = set()
    for line in netTcp.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[3] != state:
            continue
        _, _, hexPort = fields[1].rpartition(":")
        try:
            if int(hexPort, 16) == port:
                inodes.add(int(fields[9]))
        except ValueError:
            continue
    return inodes


def socketInodes(pid: int) -> set[int]:
    """The inodes of the sockets C{pid} holds open."""
    inodes: set[int] = set()
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{folder}/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _netTcp() -> str:
    """C{/proc/net/tcp} and C{/proc/net/tcp6} (what of them can be read)."""
    text = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            text += Path(table).read_text()
        except OSError:
            continue
    return text


def listeners(pids: Iterable[int], port: int) -> list[int]:
    """Those of C{pids} that hold a socket listening on C{port}."""
    inodes = listeningInodes(_netTcp(), port)
    return [pid for pid in pids if socketInodes(pid) & inodes]


def connectionsHeld(pids: Iterable[int], port: int) -> dict[int, int]:
    """How many connections accepted on C{port} each of C{pids} holds now."""
    inodes = connectedInodes(_netTcp(), port)
    return {pid: len(socketInodes(pid) & inodes) for pid in pids}


def machineSeconds(
    before: Mapping[int, tuple[float, float]], after: Mapping[int, tuple[float, float]]
) -> tuple[float, float]:
    """Busy and total CPU seconds of every CPU between two L{cpuTimes} readings."""
    busy = total = 0.0
    for cpu, (busyAfter, totalAfter) in after.items():
        if cpu in before:
            busy += busyAfter - before[cpu][0]
            total += totalAfter - before[cpu][1]
    return busy, total


# -- configuration -------------------------------------------------------------


def twistedProxyWorkersConfig(port: int, backendPort: int, workers: int) -> str:
    """twisted-proxy with C{workers} processes and C{/} to one backend."""
    return (
        "[proxy]\n"
        "access_log = false\n"
        f"workers = {workers}\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{port}:interface=127.0.0.1"\n'
        "\n"
        "[[route]]\n"
        'path = "/"\n'
        f'to = "http://127.0.0.1:{backendPort}/"\n'
    )


def nginxBackendConfig(folder: Path, port: int) -> str:
    """nginx answering every request with L{backend.BODY}, one process."""
    body = backend.BODY.decode("ascii").rstrip("\n")
    return oneProcessConfig(
        folder,
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        location / {\n"
        "            default_type text/plain;\n"
        f'            return 200 "{body}\\n";\n'
        "        }\n"
        "    }\n",
    )


def nginxProxyConfig(
    folder: Path, port: int, backendPort: int, workers: int, user: str | None = None
) -> str:
    """nginx as the proxy of the reference rows: a master and C{workers} workers.

    In the foreground (the benchmark's child is the master, the root of the
    tree it measures), C{/} to the backend through an upstream keep-alive pool
    (HTTP/1.1, no C{Connection} header passed on), no access log, its pid and
    temporary files under C{folder}. The workers share the master's listening
    socket (no C{reuseport}), as twisted-proxy's workers share the owner's.
    C{user}: the C{user} line (which only counts when nginx starts as root).
    """
    return processesConfig(
        folder,
        proxyBlock(port, backendPort),
        workers,
        user,
    )


def nginxUser() -> str | None:
    """The C{user} line's value for an nginx started by this process.

    As root, nginx's workers would otherwise run as C{nobody:nobody} (no such
    group on Debian: nginx refuses to start); they run as this process's user
    and group instead, as twisted-proxy's workers do. C{None} when not root
    (nginx ignores the line then, with a warning).
    """
    if os.geteuid() != 0:
        return None
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


# -- figures -------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    """C{a / b} when both are known."""
    return a / b if a is not None and b else None


def _share(part: float | None, whole: float) -> float | None:
    return None if part is None or whole <= 0 else part / whole


def rowFigures(
    result: WrkResult,
    elapsed: float,
    machine: tuple[float, float],
    proxy: TreeCpu,
    wrkSeconds: float | None,
    backendSeconds: float | None,
    workers: int,
    switches: TreeSwitches | None = None,
    roles: tuple[str, str] = ("owner", "descendant"),
) -> dict[str, Any]:
    """One run's row: wrk's figures, CPU seconds and shares, per process.

    With C{switches}, the tree's context switches, in all and per request.
    C{roles}: what the tree's root and the other processes are called.
    """
    busy, total = machine
    known = proxy.seconds + (wrkSeconds or 0.0) + (backendSeconds or 0.0)
    row: dict[str, Any] = {
        "workers": workers,
        "wrk": result.asDict(),
        "elapsed_s": elapsed,
        "machine_cpu_s": total,
        "machine_busy_s": busy,
        "proxy_cpu_s": proxy.seconds,
        "wrk_cpu_s": wrkSeconds,
        "backend_cpu_s": backendSeconds,
        "proxy_share": _share(proxy.seconds, total),
        "wrk_share": _share(wrkSeconds, total),
        "backend_share": _share(backendSeconds, total),
        "other_share": _share(max(0.0, busy - known), total),
        "idle_share": _share(max(0.0, total - busy), total),
        "rps_per_proxy_cpu_s": _ratio(float(result.requests), proxy.seconds),
        "proxy_processes": [
            {
                "pid": pid,
                "name": name,
                "cpu_s": seconds,
                "role": roles[0] if root else roles[1],
                **_processSwitches(switches, pid),
            }
            for pid, name, seconds, root in proxy.processes
        ],
        "proxy_processes_gone": proxy.gone,
        **switchFigures(switches, result.requests),
    }
    row["idle_workers"] = idleWorkers(row)
    return row


def switchFigures(switches: TreeSwitches | None, requests: int) -> dict[str, Any]:
    """A tree's context switches for a row: in all, and per request.

    Per request only when every process's counts were read (else a part would
    be missing) and there were requests.
    """
    if switches is None:
        return {
            "proxy_voluntary_switches": None,
            "proxy_nonvoluntary_switches": None,
            "sleeps_per_request": None,
            "preempts_per_request": None,
        }
    whole = switches.unknown == 0 and requests > 0
    return {
        "proxy_voluntary_switches": switches.voluntary,
        "proxy_nonvoluntary_switches": switches.nonvoluntary,
        "proxy_switches_unknown": switches.unknown,
        "proxy_max_threads": switches.threads,
        "sleeps_per_request": switches.voluntary / requests if whole else None,
        "preempts_per_request": switches.nonvoluntary / requests if whole else None,
    }


def _processSwitches(switches: TreeSwitches | None, pid: int) -> dict[str, int]:
    """One process's context switches for its entry in a row, if known."""
    counts = None if switches is None else switches.processes.get(pid)
    if counts is None:
        return {}
    return {"voluntary_switches": counts[0], "nonvoluntary_switches": counts[1]}


def idleWorkers(row: Mapping[str, Any]) -> list[int]:
    """The pids in a row's proxy tree that did (next to) none of its work.

    An nginx master (which serves nothing by design) is not a worker.
    """
    processes = [p for p in row.get("proxy_processes") or [] if p.get("role") != MASTER]
    total = sum(p["cpu_s"] for p in processes)
    if len(processes) < 2 or total <= 0:
        return []
    return [p["pid"] for p in processes if p["cpu_s"] / total < IDLE_WORKER_SHARE]


def bestRound(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most requests/s; every round's requests/s with it.

    With them, how each round's connections were split between the processes
    (which the accepting decides anew each time).
    """
    good = [r for r in results if "error" not in r]
    if not good:
        return results[-1]
    best = max(good, key=lambda r: float(r["wrk"]["requestsPerSecond"]))
    if len(results) == 1:
        return best
    return {
        **best,
        "rounds_rps": [
            r["wrk"]["requestsPerSecond"] if "error" not in r else None for r in results
        ],
        "rounds_rps_per_proxy_cpu_s": [
            r.get("rps_per_proxy_cpu_s") if "error" not in r else None for r in results
        ],
        "rounds_connections": [
            [
                p.get("connections_midway")
                for p in r.get("proxy_processes") or []
                if p.get("role") != MASTER
            ]
            if "error" not in r
            else None
            for r in results
        ],
        "rounds_preempts_per_request": [
            r.get("preempts_per_request") if "error" not in r else None for r in results
        ],
    }


def workerRatios(rows: Mapping[str, Any]) -> dict[str, float | None] | None:
    """The two-worker run's figures over the one-worker run's."""
    one, two = rows.get("1"), rows.get("2")
    if not one or not two or "error" in one or "error" in two:
        return None
    return {
        "rps": _ratio(two["wrk"]["requestsPerSecond"], one["wrk"]["requestsPerSecond"]),
        "p99": _ratio(two["wrk"]["p99Ms"], one["wrk"]["p99Ms"]),
        "rps_per_proxy_cpu_s": _ratio(
            two.get("rps_per_proxy_cpu_s"), one.get("rps_per_proxy_cpu_s")
        ),
        "proxy_cpu_s": _ratio(two.get("proxy_cpu_s"), one.get("proxy_cpu_s")),
    }


def relativeToNginx(
    ratios: Mapping[str, Any] | None, nginxRatios: Mapping[str, Any] | None
) -> dict[str, float | None] | None:
    """twisted-proxy's 2w/1w ratios over nginx's, under the same conditions.

    1.0: going to two workers costs twisted-proxy what it costs nginx, so the
    loss is the machine's (cores shared with wrk and the backend); below 1.0,
    the rest is twisted-proxy's own.
    """
    if not ratios or not nginxRatios:
        return None
    return {
        key: _ratio(ratios.get(key), nginxRatios.get(key))
        for key in ("rps", "rps_per_proxy_cpu_s")
    }


def verdict(ratios: Mapping[str, Any] | None) -> bool | None:
    """Whether two workers kept L{CPU_EFFICIENCY_TARGET}; C{None} if unknown."""
    value = (ratios or {}).get("rps_per_proxy_cpu_s")
    return None if value is None else value >= CPU_EFFICIENCY_TARGET


# -- the part ------------------------------------------------------------------


class WorkersBench:
    """Runs twisted-proxy, then nginx, with each worker count in front of one nginx."""

    def __init__(
        self,
        settings: WorkersSettings,
        children: Children,
        workDir: Path,
        log: Callable[[str], None],
        reader: ProcReader | None = None,
    ) -> None:
        self._s = settings
        self._children = children
        self._workDir = workDir
        self._log = log
        self._reader: ProcReader = reader or LiveProc()
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._wrk = ""
        self._nginx = ""

    def run(self) -> dict[str, Any]:
        """Every worker count, C{rounds} times, alternating; the report.

        Each round runs twisted-proxy with each count, then (with
        C{reference}) nginx as the proxy with each count.
        """
        s = self._s
        self._wrk = ensureWrk()
        self._nginx = nginx = ensureTool("nginx", "nginx")
        report: dict[str, Any] = {
            "settings": {**asdict(s), "counts": list(s.counts)},
            "machine": {
                "cpu_count": os.cpu_count(),
                "usable_cpus": len(os.sched_getaffinity(0)),
            },
            "backend": "nginx (one process, return 200)",
            "pinning": "none: proxy workers, wrk and nginx share every CPU",
        }
        if s.reference:
            report["reference"] = (
                "nginx as the proxy: a master and N worker processes, upstream "
                "keepalive 64, same backend, wrk and measuring"
            )
        folder = self._workDir / "workers-backend"
        folder.mkdir(parents=True, exist_ok=True)
        backendPort = freePort()
        config = folder / "nginx.conf"
        config.write_text(nginxBackendConfig(folder, backendPort))
        backendChild = self._children.start(
            "workers-backend", nginxCommand(nginx, folder, config), cpu=None
        )
        results: dict[int, list[dict[str, Any]]] = {n: [] for n in s.counts}
        reference: dict[int, list[dict[str, Any]]] = {n: [] for n in s.counts}
        try:
            waitForListener(backendChild, backendPort)
            problem = backend.checkAnswer(backendPort)
            if problem:
                raise ChildError(f"the nginx backend answers wrong: {problem}")
            for r in range(s.rounds):
                tag = f"round{r + 1}" if s.rounds > 1 else ""
                for n in s.counts:
                    results[n].append(self._measure(n, backendChild, backendPort, tag))
                if not s.reference:
                    continue
                for n in s.counts:
                    reference[n].append(
                        self._measureNginx(n, backendChild, backendPort, tag)
                    )
        finally:
            self._children.stop(backendChild)
        report["rows"] = {str(n): bestRound(rs) for n, rs in results.items()}
        report["ratios"] = workerRatios(report["rows"])
        report["verdict"] = verdict(report["ratios"])
        if s.reference:
            report["nginx_rows"] = {
                str(n): bestRound(rs) for n, rs in reference.items()
            }
            report["nginx_ratios"] = workerRatios(report["nginx_rows"])
            report["relative_to_nginx"] = relativeToNginx(
                report["ratios"], report["nginx_ratios"]
            )
        return report

    def _measure(
        self, workers: int, backendChild: Child, backendPort: int, tag: str
    ) -> dict[str, Any]:
        """Start twisted-proxy with C{workers}, warm it up, measure it, stop it."""
        name = f"workers{workers}{'-' + tag if tag else ''}"
        label = f"workers = {workers}"
        self._log(f"{label}: starting {tag}".rstrip())
        port = freePort()
        config = self._workDir / f"twisted-proxy-workers{workers}-{port}.toml"
        config.write_text(twistedProxyWorkersConfig(port, backendPort, workers))
        argv = [str(twistd()), "-n", "--pidfile=", "proxy", "--config", str(config)]
        child = self._children.start(
            f"twisted-proxy-{name}", argv, cpu=None, cwd=self._workDir
        )
        row = self._measureTree(
            child, port, workers, workers, backendChild, name, label
        )
        return {"proxy": "twisted-proxy", **row}

    def _measureNginx(
        self, workers: int, backendChild: Child, backendPort: int, tag: str
    ) -> dict[str, Any]:
        """The same with nginx as the proxy: a master and C{workers} workers."""
        name = f"nginx{workers}{'-' + tag if tag else ''}"
        label = f"nginx, {_label(workers)}"
        self._log(f"{label}: starting {tag}".rstrip())
        port = freePort()
        folder = self._workDir / f"nginx-proxy{workers}-{port}"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "nginx.conf"
        config.write_text(
            nginxProxyConfig(folder, port, backendPort, workers, nginxUser())
        )
        child = self._children.start(
            f"nginx-proxy-{name}", nginxCommand(self._nginx, folder, config), cpu=None
        )
        # The master holds the listening socket too: every process of the tree.
        row = self._measureTree(
            child,
            port,
            workers,
            workers + 1,
            backendChild,
            name,
            label,
            roles=(MASTER, "worker"),
        )
        return {"proxy": "nginx", "expected_processes": workers + 1, **row}

    def _measureTree(
        self,
        child: Child,
        port: int,
        workers: int,
        listening: int,
        backendChild: Child,
        name: str,
        label: str,
        roles: tuple[str, str] = ("owner", "descendant"),
    ) -> dict[str, Any]:
        """Wait for C{child}'s tree to listen, warm it up, measure it, stop it.

        C{listening}: how many processes of the tree must listen on C{port}.
        """
        s = self._s
        last: TreeSample = {}
        try:
            waitForListener(child, port)
            ready = self._waitForWorkers(child, port, listening, label)
            problem = backend.checkAnswer(port)
            if problem:
                return {"workers": workers, "error": problem, "log": child.tail()}
            self._log(f"{label}: warm-up {s.warmup:.0f} s, then wrk {s.seconds:.0f} s")
            self._runWrk(f"wrk-{name}-warmup", port, s.warmup)
            systemBefore = cpuTimes()
            proxyBefore = treeSample(child.pid, self._reader)
            backendBefore = treeSample(backendChild.pid, self._reader)
            held: dict[int, int] = {}

            def sampleConnections() -> None:
                pids = [
                    stat.pid for stat in treeSample(child.pid, self._reader).values()
                ]
                held.update(connectionsHeld(pids, port))

            began = time.monotonic()
            result, wrkSeconds = self._runWrk(
                f"wrk-{name}", port, s.seconds, sampleConnections
            )
            last = proxyAfter = treeSample(child.pid, self._reader)
            backendAfter = treeSample(backendChild.pid, self._reader)
            systemAfter = cpuTimes()
            elapsed = time.monotonic() - began
            if not child.alive():
                return {
                    "workers": workers,
                    "error": f"{child.name} died during the run:\n{child.tail()}",
                }
        except (ChildError, WrkError) as e:
            return {"workers": workers, "error": str(e), "log": child.tail()}
        finally:
            outlived = self._stop(child, last)
        proxy = treeCpu(proxyBefore, proxyAfter, child.pid, self._ticks)
        backendCpu = treeCpu(backendBefore, backendAfter, backendChild.pid, self._ticks)
        row = rowFigures(
            result,
            elapsed,
            machineSeconds(systemBefore, systemAfter),
            proxy,
            wrkSeconds,
            backendCpu.seconds if backendAfter else None,
            workers,
            switches=treeSwitches(proxyBefore, proxyAfter),
            roles=roles,
        )
        row["listening_processes"] = len(ready)
        row["listening_expected"] = listening
        for process in row["proxy_processes"]:
            process["connections_midway"] = held.get(process["pid"])
        if outlived:
            row["outlived_owner"] = outlived
        return row

    def _waitForWorkers(
        self, child: Child, port: int, workers: int, label: str
    ) -> list[int]:
        """Wait until C{workers} processes of the tree listen on C{port}.

        Gives up after L{_WORKERS_TIMEOUT} and says so: the run goes on, and
        its row shows how many listened. Returns the pids that listen.
        """
        deadline = time.monotonic() + _WORKERS_TIMEOUT
        while True:
            tree = treeSample(child.pid, self._reader)
            ready = listeners([stat.pid for stat in tree.values()], port)
            if len(ready) >= workers:
                return ready
            if not child.alive():
                raise ChildError(f"{child.name} exited early:\n{child.tail()}")
            if time.monotonic() > deadline:
                self._log(
                    f"{label}: only {len(ready)} of {len(tree)} "
                    f"processes listen on the port after {_WORKERS_TIMEOUT:.0f} s"
                )
                return ready
            _pause(0.05)

    def _runWrk(
        self,
        name: str,
        port: int,
        seconds: float,
        midway: Callable[[], None] | None = None,
    ) -> tuple[WrkResult, float | None]:
        """One wrk run, unpinned; its figures and the CPU seconds it used.

        wrk's C{stat} is read after it has exited and before it is reaped
        (C{waitid} with C{WNOWAIT}): a zombie still shows its times.
        C{midway} is called once, halfway through the run.
        """
        argv = wrkCommand(self._wrk, port, seconds, self._s.connections)
        child = self._children.start(name, argv, cpu=None)
        halfway = time.monotonic() + seconds / 2
        deadline = time.monotonic() + seconds + 30
        cpu: float | None = None
        try:
            while True:
                if midway is not None and time.monotonic() >= halfway:
                    midway()
                    midway = None
                done = os.waitid(
                    os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT
                )
                if done is not None:
                    break
                if time.monotonic() > deadline:
                    raise ChildError(
                        f"{name} did not finish within {seconds + 30:.0f} s"
                    )
                _pause(_POLL)
            line = self._reader.stat(child.pid)
            if line is not None:
                cpu = parseStat(line).ticks / self._ticks
        finally:
            code = self._children.stop(child)
        output = child.log.read_text(errors="replace")
        if code != 0:
            raise WrkError(f"wrk exited with {code}:\n{output[-1500:]}")
        return parseWrk(output), cpu

    def _stop(self, child: Child, last: TreeSample) -> list[int]:
        """Stop the owner; kill any process of its tree that outlived it.

        Returns the pids that had to be killed (none if the owner takes its
        workers down with it, as it should).
        """
        self._children.stop(child)
        leftovers = [s for s in last.values() if s.pid != child.pid]
        deadline = time.monotonic() + 3.0
        while leftovers and time.monotonic() < deadline:
            leftovers = [s for s in leftovers if self._same(s)]
            if leftovers:
                _pause(0.05)
        killed = [stat.pid for stat in leftovers if self._same(stat)]
        for pid in killed:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return killed

    def _same(self, stat: ProcStat) -> bool:
        """Whether the process C{stat} was read from still runs (not a zombie)."""
        line = self._reader.stat(stat.pid)
        if line is None:
            return False
        try:
            now = parseStat(line)
        except ValueError:
            return False
        return now.starttime == stat.starttime and now.state not in ("Z", "X")


# -- summary -------------------------------------------------------------------


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _label(workers: int) -> str:
    return f"{workers} worker{'s' if workers != 1 else ''}"


def _nginxLabel(workers: int) -> str:
    return f"nginx {workers}w"


def ratioRow(label: str, ratios: Mapping[str, Any]) -> str:
    """The ratio row, lined up under the table's first three columns."""
    cells = [
        _fmt(ratios.get(key), ".2f", "x")
        for key in ("rps", "p99", "rps_per_proxy_cpu_s")
    ]
    return f"  {label:<14}{cells[0]:>10}{cells[1]:>10}{cells[2]:>11}"


def tableRow(label: str, row: Mapping[str, Any]) -> str:
    """One run's line of the table (or that it failed)."""
    if "error" in row:
        first = row["error"].splitlines()[0] if row["error"] else "error"
        return f"  {label:<14}failed: {first[:60]}"
    w = row["wrk"]
    return (
        f"  {label:<14}{w['requestsPerSecond']:>10,.0f}"
        f"{_fmt(w['p99Ms'], '.2f', ' ms'):>10}"
        f"{_fmt(row.get('rps_per_proxy_cpu_s'), ',.0f'):>11}"
        f"{_fmt(row.get('proxy_share'), '.0%'):>7}"
        f"{_fmt(row.get('wrk_share'), '.0%'):>6}"
        f"{_fmt(row.get('backend_share'), '.0%'):>8}"
        f"{_fmt(row.get('other_share'), '.0%'):>7}"
        f"{_fmt(row.get('idle_share'), '.0%'):>6}"
        f"{len(row.get('proxy_processes') or []):>7}{w['errors']:>8}"
        f"{_fmt(row.get('preempts_per_request'), '.2f'):>14}"
        f"{_fmt(row.get('sleeps_per_request'), '.2f'):>12}"
    )


def summariseWorkers(report: Mapping[str, Any]) -> str:
    """The human-readable summary of the workers part."""
    s = report["settings"]
    machine = report.get("machine") or {}
    counts = " and ".join(str(n) for n in s["counts"])
    lines = [
        "",
        f"Workers: twisted-proxy with [proxy] workers = {counts}, nothing pinned "
        f"({machine.get('cpu_count', '?')} CPUs), {report.get('backend', 'nginx')}",
        f"  wrk -t1 -c{s['connections']} --latency, {s['seconds']:.0f} s after a "
        f"{s['warmup']:.0f} s warm-up; CPU shares are of all CPUs' time meanwhile",
    ]
    nginxRows = report.get("nginx_rows") or {}
    if nginxRows:
        lines.append(
            f"  reference: nginx as the proxy, a master and {counts} workers "
            "(upstream keepalive 64), the same backend, wrk and measuring"
        )
    lines += [
        "",
        f"  {'':<14}{'req/s':>10}{'p99':>10}{'req/CPU-s':>11}"
        f"{'proxy':>7}{'wrk':>6}{'backend':>8}{'other':>7}{'idle':>6}"
        f"{'procs':>7}{'errors':>8}{'preempts/req':>14}{'sleeps/req':>12}",
    ]
    rows = report.get("rows") or {}
    lines += [tableRow(_label(int(key)), row) for key, row in rows.items()]
    ratios = report.get("ratios")
    if ratios:
        lines.append(ratioRow("ratio 2w/1w", ratios))
    lines += [tableRow(_nginxLabel(int(key)), row) for key, row in nginxRows.items()]
    nginxRatios = report.get("nginx_ratios")
    if nginxRatios:
        lines.append(ratioRow("nginx 2w/1w", nginxRatios))
    if ratios:
        value = ratios.get("rps_per_proxy_cpu_s")
        outcome = (
            "-"
            if value is None
            else "PASS"
            if value >= CPU_EFFICIENCY_TARGET
            else "FAIL"
        )
        if (rows.get("2") or {}).get("idle_workers"):
            outcome += " (but one worker served next to nothing: see below)"
        lines.append(
            f"  req/s per proxy CPU-second, 2 workers / 1: "
            f"{_fmt(value, '.2f', 'x')} (target >= {CPU_EFFICIENCY_TARGET}x): "
            f"{outcome}"
        )
        lines.append(
            f"  total req/s, 2 workers / 1: {_fmt(ratios.get('rps'), '.2f', 'x')} "
            "(no target)"
        )
    lines += _referenceLines(report)
    for key, row in rows.items():
        if "error" not in row:
            lines += _processLines(_label(int(key)), int(key), row)
    for key, row in nginxRows.items():
        if "error" not in row:
            lines += _processLines(_nginxLabel(int(key)), int(key), row)
    lines.append(
        "  (req/CPU-s: requests per CPU-second of the proxy's whole process tree;"
        "\n   proxy, wrk, backend, other, idle: shares of the machine's CPU time"
        "\n   during the run, other being everything else that ran, the kernel's"
        "\n   own too; preempts/req, sleeps/req: the proxy tree's involuntary and"
        "\n   voluntary context switches (/proc/PID/status) per request;"
        "\n   conns: wrk's connections each process held halfway through the run)"
    )
    if nginxRows:
        lines.append(
            "  (relative to nginx's: 1.00x means two workers cost twisted-proxy no"
            "\n   more than they cost nginx on this machine, the loss being the"
            "\n   machine's; below, the rest of the loss is twisted-proxy's own)"
        )
    return "\n".join(lines)


def _referenceLines(report: Mapping[str, Any]) -> list[str]:
    """nginx's own 2w/1w ratios, and twisted-proxy's relative to them."""
    if not report.get("nginx_rows"):
        return []
    nginxRatios = report.get("nginx_ratios") or {}
    relative = report.get("relative_to_nginx") or {}
    return [
        f"  nginx as the proxy, 2 workers / 1: "
        f"req/s {_fmt(nginxRatios.get('rps'), '.2f', 'x')}, "
        f"req per CPU-second {_fmt(nginxRatios.get('rps_per_proxy_cpu_s'), '.2f', 'x')}"
        " (no target)",
        f"  twisted-proxy's 2w/1w req/CPU-s relative to nginx's: "
        f"{_fmt(relative.get('rps_per_proxy_cpu_s'), '.2f', 'x')}",
    ]


def _processLines(label: str, workers: int, row: Mapping[str, Any]) -> list[str]:
    """How a row's proxy CPU was split, and whatever looks wrong with it."""
    lines: list[str] = []
    processes = row.get("proxy_processes") or []
    total = sum(p["cpu_s"] for p in processes)
    requests = (row.get("wrk") or {}).get("requests") or 0
    split = ", ".join(
        f"{p['role']} {p['name']} {p['cpu_s']:.1f} s"
        + (f" ({p['cpu_s'] / total:.0%})" if total > 0 and len(processes) > 1 else "")
        + (
            f" {p['connections_midway']} conns"
            if p.get("connections_midway") is not None
            else ""
        )
        + (
            f" {p['nonvoluntary_switches'] / requests:.2f} preempts/req"
            if p.get("nonvoluntary_switches") is not None and requests > 0
            else ""
        )
        for p in processes
    )
    lines.append(f"  {label}: proxy CPU by process: {split or 'unknown'}")
    expected = row.get("expected_processes", workers)
    if len(processes) != expected:
        lines.append(
            f"  WARNING: {label}: {len(processes)} processes in the proxy's tree, "
            f"{expected} expected"
        )
    listening = row.get("listening_processes")
    if listening is not None and listening < row.get("listening_expected", workers):
        lines.append(
            f"  WARNING: {label}: {listening} of the processes listened on the port"
        )
    idle = row.get("idle_workers") or []
    if idle:
        lines.append(
            f"  WARNING: {label}: process(es) {', '.join(map(str, idle))} used under "
            f"{IDLE_WORKER_SHARE:.0%} of the tree's CPU: they served (next to) nothing"
        )
    if row.get("proxy_processes_gone"):
        lines.append(
            f"  WARNING: {label}: {row['proxy_processes_gone']} process(es) of the "
            "tree exited during the run (their CPU is not counted)"
        )
    if row.get("outlived_owner"):
        lines.append(
            f"  WARNING: {label}: process(es) {row['outlived_owner']} outlived the "
            "owner's stop and were killed"
        )
    if row.get("proxy_switches_unknown"):
        lines.append(
            f"  WARNING: {label}: the context switches of "
            f"{row['proxy_switches_unknown']} process(es) could not be read: "
            "none per request"
        )
    if (row.get("proxy_max_threads") or 0) > 1:
        lines.append(
            f"  NOTE: {label}: a process of the tree ran {row['proxy_max_threads']} "
            "threads; its context switches are its main thread's"
        )
    other = row.get("other_share")
    if other is not None and other > OTHER_SHARE_WARNING:
        lines.append(
            f"  WARNING: {label}: other processes took {other:.0%} of the machine: "
            "its figures are unreliable"
        )
    if "rounds_rps" in row:
        n = len(row["rounds_rps"])
        splits = row.get("rounds_connections") or [None] * n
        perCpu = row.get("rounds_rps_per_proxy_cpu_s") or [None] * n
        preempts = row.get("rounds_preempts_per_request") or [None] * n
        each = ", ".join(
            _fmt(r, ",.0f") + _split(c, e, p)
            for r, c, e, p in zip(
                row["rounds_rps"], splits, perCpu, preempts, strict=False
            )
        )
        lines.append(f"  {label}: req/s per round {each}; best shown")
    return lines


def _split(
    connections: Sequence[int | None] | None,
    perCpu: float | None,
    preempts: float | None = None,
) -> str:
    """A round's req/CPU-s, its connections by process (if more than one), and
    its preemptions per request."""
    said = [] if perCpu is None else [f"{perCpu:,.0f} req/CPU-s"]
    if connections and len(connections) > 1 and None not in connections:
        said.append("/".join(str(c) for c in connections) + " conns")
    if preempts is not None:
        said.append(f"{preempts:.2f} preempts/req")
    return f" ({', '.join(said)})" if said else ""
