"""
Tests for the workers benchmark's pure parts: what it reads from /proc (stat
lines, status files, process trees, listening sockets), the CPU and context
switches it works out for a tree, its configurations (nginx's checked by nginx
itself when it is installed), its ratios and its summary, and the command-line
flags.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench import backend
from bench.__main__ import _parseArgs
from bench.nginx import oneProcessConfig
from bench.workers import (
    CPU_EFFICIENCY_TARGET,
    MASTER,
    ProcStat,
    ProcStatus,
    TreeCpu,
    TreeSwitches,
    bestRound,
    connectedInodes,
    idleWorkers,
    listeningInodes,
    machineSeconds,
    nginxBackendConfig,
    nginxProxyConfig,
    nginxUser,
    parseStat,
    parseStatus,
    relativeToNginx,
    rowFigures,
    summariseWorkers,
    switchFigures,
    treeCpu,
    treeSample,
    treeSwitches,
    twistedProxyWorkersConfig,
    verdict,
    workerRatios,
)
from bench.wrk import WrkResult
from twisted_proxy.config import loadString


def statLine(
    pid: int,
    name: str,
    ppid: int,
    utime: int,
    stime: int,
    starttime: int = 1000,
    state: str = "S",
) -> str:
    """A /proc/PID/stat line with the fields the benchmark reads set."""
    # Fields 3 to 52 of proc(5): state, ppid, pgrp, session, tty_nr, tpgid,
    # flags, minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime,
    # priority, nice, num_threads, itrealvalue, starttime, then the rest.
    fields = [state, str(ppid), str(pid), str(pid), "0", "-1", "4194560"]
    fields += ["1933", "0", "0", "0", str(utime), str(stime), "77", "88"]
    fields += ["20", "0", "3", "0", str(starttime)]
    fields += ["0"] * 32
    return f"{pid} ({name}) " + " ".join(fields) + "\n"


def statusText(voluntary: int, nonvoluntary: int, threads: int = 1) -> str:
    """A /proc/PID/status as the kernel writes it, the fields read set."""
    return (
        "Name:\ttwistd\n"
        "Umask:\t0022\n"
        "State:\tS (sleeping)\n"
        "Tgid:\t4242\n"
        "Pid:\t4242\n"
        "PPid:\t17\n"
        "VmRSS:\t   61236 kB\n"
        f"Threads:\t{threads}\n"
        "SigQ:\t0/95806\n"
        "Cpus_allowed_list:\t0-1\n"
        f"voluntary_ctxt_switches:\t{voluntary}\n"
        f"nonvoluntary_ctxt_switches:\t{nonvoluntary}\n"
    )


class FakeProc:
    """A process table from stat lines (and status texts), as
    L{bench.workers.ProcReader}."""

    def __init__(
        self, lines: Iterable[str], statuses: Mapping[int, str] | None = None
    ) -> None:
        self.lines = {int(line.split(" ", 1)[0]): line for line in lines}
        self.statuses = dict(statuses or {})

    def pids(self) -> list[int]:
        return list(self.lines)

    def stat(self, pid: int) -> str | None:
        return self.lines.get(pid)

    def status(self, pid: int) -> str | None:
        return self.statuses.get(pid)


# -- stat lines ----------------------------------------------------------------


def test_parseStat() -> None:
    """The fields it needs, cutime and cstime (the reaped children's) left out."""
    stat = parseStat(statLine(4242, "twistd", 17, 350, 120, starttime=98765))
    assert stat == ProcStat(
        pid=4242,
        name="twistd",
        state="S",
        ppid=17,
        utime=350,
        stime=120,
        starttime=98765,
    )
    assert stat.ticks == 470
    assert stat.key == (4242, 98765)


def test_parseStatNameWithSpacesAndParentheses() -> None:
    """The name runs to the last C{)}: spaces and parentheses of its own are kept."""
    stat = parseStat(statLine(7, "a (b) c) ) d", 1, 5, 6, state="R"))
    assert stat.name == "a (b) c) ) d"
    assert (stat.state, stat.ppid, stat.utime, stat.stime) == ("R", 1, 5, 6)


def test_parseStatRealLine() -> None:
    """A line as the kernel writes it (a zombie wrk's, times kept)."""
    line = (
        "3043 (wrk) Z 3041 3043 1907 0 -1 4227084 1933 0 0 0 27 28 0 0 20 0 1 0 "
        "52133 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 "
        "0 0 0 0 0 0 0 0"
    )
    stat = parseStat(line)
    assert (stat.pid, stat.name, stat.state, stat.ppid) == (3043, "wrk", "Z", 3041)
    assert (stat.utime, stat.stime, stat.starttime) == (27, 28, 52133)


@pytest.mark.parametrize(
    "line", ["", "1234 wrk S 1 2 3", "12 (x) S 1 2 3 4 5", "x (y) S" + " 0" * 30]
)
def test_parseStatRefuses(line: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parseStat(line)


# -- status files --------------------------------------------------------------


def test_parseStatus() -> None:
    """The context switches (voluntary: slept; nonvoluntary: preempted) and the
    thread count, the other fields ignored."""
    assert parseStatus(statusText(12, 3456, threads=2)) == ProcStatus(
        voluntary=12, nonvoluntary=3456, threads=2
    )


def test_parseStatusMissingOrBad() -> None:
    """A field missing or not a number is C{None}; no line is taken for another."""
    assert parseStatus("") == ProcStatus(None, None, None)
    text = (
        "Name:\tvoluntary_ctxt_switches: 9\n"
        "voluntary_ctxt_switches:\tmany\n"
        "nonvoluntary_ctxt_switches:\t7\n"
    )
    assert parseStatus(text) == ProcStatus(None, 7, None)


# -- process trees -------------------------------------------------------------


def table(owner: tuple[int, int], follower: tuple[int, int], other: int) -> FakeProc:
    """An owner (100) with a follower (101) and a grandchild (102), and others."""
    return FakeProc(
        [
            statLine(1, "init", 0, 5000, 5000),
            statLine(100, "twistd", 1, *owner),
            statLine(101, "python (follower)", 100, *follower),
            statLine(102, "sh", 101, 1, 1),
            statLine(200, "wrk", 1, other, other),
            statLine(201, "child of wrk", 200, other, other),
        ]
    )


def test_treeSample() -> None:
    """The root and every descendant, nothing else."""
    sample = treeSample(100, table((10, 5), (20, 5), 9))
    assert sorted(stat.pid for stat in sample.values()) == [100, 101, 102]
    assert treeSample(999, table((10, 5), (20, 5), 9)) == {}


def test_treeSampleSkipsUnreadable() -> None:
    """A process gone between the listing and the read, or unreadable, is left out."""
    proc = table((10, 5), (20, 5), 9)
    proc.lines[102] = "garbage"
    proc.lines[103] = statLine(103, "late", 100, 1, 1)
    del proc.lines[103]
    sample = treeSample(100, proc)
    assert sorted(stat.pid for stat in sample.values()) == [100, 101]


def test_treeSampleStatus() -> None:
    """Each process of the tree gets its switch counts from its status; one
    whose status cannot be read keeps C{None}."""
    proc = table((10, 5), (20, 5), 9)
    proc.statuses = {100: statusText(3, 40), 101: statusText(5, 60, threads=4)}
    sample = {stat.pid: stat for stat in treeSample(100, proc).values()}
    assert (sample[100].voluntary, sample[100].nonvoluntary) == (3, 40)
    assert (sample[101].nonvoluntary, sample[101].threads) == (60, 4)
    assert (sample[102].voluntary, sample[102].nonvoluntary) == (None, None)
    assert sample[100].ticks == 15


def switchSample(counts: Mapping[int, tuple[int, int] | None]) -> FakeProc:
    """An owner (100) and followers with the given switch counts (or none)."""
    return FakeProc(
        [statLine(pid, "w", 1 if pid == 100 else 100, 1, 1) for pid in counts],
        {pid: statusText(*c) for pid, c in counts.items() if c is not None},
    )


def test_treeSwitches() -> None:
    """Each process's switches since the first sample, summed over the tree."""
    before = treeSample(100, switchSample({100: (10, 100), 101: (20, 200)}))
    after = treeSample(100, switchSample({100: (12, 1100), 101: (21, 2200)}))
    switches = treeSwitches(before, after)
    assert switches == TreeSwitches(
        voluntary=3,
        nonvoluntary=3000,
        processes={100: (2, 1000), 101: (1, 2000)},
        unknown=0,
        threads=1,
    )


def test_treeSwitchesNewGoneUnknown() -> None:
    """As for CPU: a new process counts whole, a gone one not at all; one whose
    counts could not be read in either sample is left out and counted unknown."""
    before = treeSample(
        100, switchSample({100: (10, 100), 101: (5, 5), 102: None, 104: (1, 1)})
    )
    after = treeSample(
        100, switchSample({100: (10, 150), 101: None, 102: (9, 9), 103: (1, 7)})
    )
    switches = treeSwitches(before, after)
    assert switches.processes == {100: (0, 50), 103: (1, 7)}
    assert (switches.voluntary, switches.nonvoluntary) == (1, 57)
    assert switches.unknown == 2
    assert treeSwitches({}, {}).threads == 0


def test_treeCpu() -> None:
    """Each process's ticks since the first sample, summed over the tree."""
    before = treeSample(100, table((100, 50), (10, 5), 7))
    after = treeSample(100, table((400, 150), (310, 105), 900))
    cpu = treeCpu(before, after, 100, ticksPerSecond=100.0)
    assert cpu.seconds == pytest.approx(4.0 + 4.0 + 0.0)
    assert cpu.processes == [
        (100, "twistd", pytest.approx(4.0), True),
        (101, "python (follower)", pytest.approx(4.0), False),
        (102, "sh", 0.0, False),
    ]
    assert cpu.gone == 0


def test_treeCpuNewAndGoneProcesses() -> None:
    """A process started in between counts whole; one that went is counted as gone.

    A pid reused by a new process (another start time) is a new process.
    """
    before = FakeProc(
        [
            statLine(100, "twistd", 1, 100, 0),
            statLine(101, "old", 100, 50, 0, starttime=10),
            statLine(102, "gone", 100, 50, 0),
        ]
    )
    after = FakeProc(
        [
            statLine(100, "twistd", 1, 200, 0),
            statLine(101, "reused", 100, 30, 0, starttime=20),
            statLine(103, "new", 100, 70, 0),
        ]
    )
    cpu = treeCpu(treeSample(100, before), treeSample(100, after), 100, 100.0)
    assert cpu.seconds == pytest.approx(1.0 + 0.3 + 0.7)
    assert [p[0] for p in cpu.processes] == [100, 101, 103]
    assert cpu.gone == 2


def test_machineSeconds() -> None:
    """Busy and total seconds of all CPUs; a CPU missing from either is left out."""
    before = {0: (10.0, 100.0), 1: (20.0, 100.0)}
    after = {0: (18.0, 110.0), 1: (25.0, 110.0), 2: (1.0, 1.0)}
    assert machineSeconds(before, after) == pytest.approx((13.0, 20.0))


NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5551 1 0 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5552 1 0 100 0 0 10 0
   2: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 5553 1 0 20 4 30 10 -1
   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5554 1 0 100 0 0 10 0
"""  # noqa: E501


def test_listeningInodes() -> None:
    """Listening sockets on the port only (two with SO_REUSEPORT), not connections."""
    assert listeningInodes(NET_TCP, 8080) == {5551, 5552}
    assert listeningInodes(NET_TCP, 8081) == {5554}
    assert listeningInodes(NET_TCP, 80) == set()


def test_connectedInodes() -> None:
    """Connections accepted on the port, not its listeners, nor other ports'."""
    assert connectedInodes(NET_TCP, 8080) == {5553}
    assert connectedInodes(NET_TCP, 8081) == set()


# -- configurations ------------------------------------------------------------


def test_twistedProxyWorkersConfig() -> None:
    text = twistedProxyWorkersConfig(18080, 19090, 2)
    assert "workers = 2\n" in text
    assert 'endpoint = "tcp:18080:interface=127.0.0.1"' in text
    assert 'to = "http://127.0.0.1:19090/"' in text


@pytest.mark.parametrize("workers", [1, 2])
def test_twistedProxyWorkersConfigLoads(workers: int) -> None:
    """twisted-proxy's own loader accepts it and reads the worker count."""
    config = loadString(twistedProxyWorkersConfig(18080, 19090, workers))
    assert getattr(config.proxy, "workers", workers) == workers


def test_nginxBackendConfig(tmp_path: Path) -> None:
    """One nginx process answering with the fast backend's body."""
    text = nginxBackendConfig(tmp_path, 19090)
    assert text.startswith(oneProcessConfig(tmp_path, "")[: text.index("http {")])
    assert "listen 127.0.0.1:19090;" in text
    assert f'return 200 "{backend.BODY.decode().strip()}\\n";' in text


@pytest.mark.parametrize("workers", [1, 2])
def test_nginxProxyConfig(tmp_path: Path, workers: int) -> None:
    """A master and the workers, an upstream keep-alive pool, every path under
    the folder, no access log."""
    text = nginxProxyConfig(tmp_path, 18080, 19090, workers)
    assert "daemon off;\n" in text
    assert "master_process on;\n" in text
    assert f"worker_processes {workers};\n" in text
    assert "user " not in text
    assert f"pid {tmp_path / 'nginx.pid'};" in text
    assert "    access_log off;\n" in text
    assert (
        "    upstream backend {\n"
        "        server 127.0.0.1:19090;\n"
        "        keepalive 64;\n"
        "    }\n"
    ) in text
    assert "listen 127.0.0.1:18080;" in text
    assert "reuseport" not in text
    assert "proxy_pass http://backend;" in text
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {tmp_path / kind};" in text
    assert "user root root;\n" in nginxProxyConfig(
        tmp_path, 18080, 19090, workers, "root root"
    )


def test_nginxUser() -> None:
    """As root, this process's user and group; otherwise no user line."""
    user = nginxUser()
    if os.geteuid() == 0:
        assert user is not None
        assert len(user.split()) == 2
    else:
        assert user is None


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
@pytest.mark.parametrize("workers", [1, 2])
def test_nginxProxyConfigAccepted(tmp_path: Path, workers: int) -> None:
    """nginx itself (C{nginx -t}) accepts the configuration as the bench writes it."""
    nginx = shutil.which("nginx")
    assert nginx is not None
    config = tmp_path / "nginx.conf"
    config.write_text(nginxProxyConfig(tmp_path, 18080, 19090, workers, nginxUser()))
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


# -- figures -------------------------------------------------------------------


def wrk(rps: float, p99: float, requests: int) -> WrkResult:
    return WrkResult(
        requestsPerSecond=rps,
        requests=requests,
        seconds=10.0,
        p50Ms=p99 / 3,
        p75Ms=None,
        p90Ms=None,
        p99Ms=p99,
        avgMs=None,
        maxMs=None,
    )


def test_rowFigures() -> None:
    """Shares of the machine's CPU time; requests per proxy CPU-second."""
    proxy = TreeCpu(10.0, [(100, "twistd", 5.5, True), (101, "python3", 4.5, False)], 0)
    row = rowFigures(
        wrk(8000.0, 12.0, 80_000),
        elapsed=10.2,
        machine=(18.0, 20.0),
        proxy=proxy,
        wrkSeconds=3.0,
        backendSeconds=1.0,
        workers=2,
    )
    assert row["rps_per_proxy_cpu_s"] == pytest.approx(8000.0)
    assert row["proxy_share"] == pytest.approx(0.5)
    assert row["wrk_share"] == pytest.approx(0.15)
    assert row["backend_share"] == pytest.approx(0.05)
    assert row["other_share"] == pytest.approx(0.2)
    assert row["idle_share"] == pytest.approx(0.1)
    assert [p["role"] for p in row["proxy_processes"]] == ["owner", "descendant"]
    assert row["idle_workers"] == []


def test_rowFiguresSwitches() -> None:
    """The tree's context switches in all, per request, and per process."""
    proxy = TreeCpu(10.0, [(100, "twistd", 5.5, True), (101, "python3", 4.5, False)], 0)
    switches = TreeSwitches(
        voluntary=800,
        nonvoluntary=112_000,
        processes={100: (300, 50_000), 101: (500, 62_000)},
        unknown=0,
        threads=1,
    )
    row = rowFigures(
        wrk(8000.0, 12.0, 80_000), 10.2, (18.0, 20.0), proxy, 3.0, 1.0, 2, switches
    )
    assert row["proxy_voluntary_switches"] == 800
    assert row["proxy_nonvoluntary_switches"] == 112_000
    assert row["sleeps_per_request"] == pytest.approx(0.01)
    assert row["preempts_per_request"] == pytest.approx(1.4)
    assert row["proxy_max_threads"] == 1
    assert [
        (p["voluntary_switches"], p["nonvoluntary_switches"])
        for p in row["proxy_processes"]
    ] == [(300, 50_000), (500, 62_000)]


def test_rowFiguresRoles() -> None:
    """nginx's tree: a master and its workers."""
    proxy = TreeCpu(4.0, [(100, "nginx", 0.0, True), (101, "nginx", 4.0, False)], 0)
    row = rowFigures(
        wrk(4000.0, 9.0, 40_000),
        10.0,
        (8.0, 20.0),
        proxy,
        1.0,
        1.0,
        1,
        roles=(MASTER, "worker"),
    )
    assert [p["role"] for p in row["proxy_processes"]] == [MASTER, "worker"]
    assert row["idle_workers"] == []
    assert row["preempts_per_request"] is None


def test_switchFigures() -> None:
    """Nothing per request without the counts, with a process's counts unread,
    or without requests."""
    assert switchFigures(None, 1000)["preempts_per_request"] is None
    partial = TreeSwitches(1, 2000, {100: (1, 2000)}, unknown=1, threads=1)
    figures = switchFigures(partial, 1000)
    assert figures["proxy_nonvoluntary_switches"] == 2000
    assert figures["proxy_switches_unknown"] == 1
    assert figures["preempts_per_request"] is None
    assert figures["sleeps_per_request"] is None
    whole = TreeSwitches(1, 2000, {100: (1, 2000)}, unknown=0, threads=1)
    assert switchFigures(whole, 1000)["preempts_per_request"] == pytest.approx(2.0)
    assert switchFigures(whole, 0)["preempts_per_request"] is None


def test_rowFiguresUnknownWrkCpu() -> None:
    """wrk's CPU unread: its share unknown, the rest still worked out."""
    proxy = TreeCpu(4.0, [(100, "twistd", 4.0, True)], 0)
    row = rowFigures(wrk(4000.0, 9.0, 40_000), 10.0, (8.0, 20.0), proxy, None, 1.0, 1)
    assert row["wrk_share"] is None
    assert row["other_share"] == pytest.approx(0.15)


def test_idleWorkers() -> None:
    """A worker with under a tenth of the tree's CPU served (next to) nothing."""
    processes = [
        {"pid": 100, "cpu_s": 9.5, "role": "owner", "name": "twistd"},
        {"pid": 101, "cpu_s": 0.5, "role": "descendant", "name": "python3"},
    ]
    assert idleWorkers({"proxy_processes": processes}) == [101]
    assert idleWorkers({"proxy_processes": processes[:1]}) == []
    assert idleWorkers({"proxy_processes": []}) == []


def test_idleWorkersNginxMaster() -> None:
    """An nginx master serves nothing by design: it is no idle worker, and the
    workers' shares are of the workers' CPU."""
    processes = [
        {"pid": 100, "cpu_s": 0.0, "role": MASTER, "name": "nginx"},
        {"pid": 101, "cpu_s": 5.0, "role": "worker", "name": "nginx"},
        {"pid": 102, "cpu_s": 0.4, "role": "worker", "name": "nginx"},
    ]
    assert idleWorkers({"proxy_processes": processes}) == [102]
    assert idleWorkers({"proxy_processes": processes[:2]}) == []


def test_bestRound() -> None:
    """The round with the most requests/s, every round's listed; failures kept out."""
    a = {"wrk": {"requestsPerSecond": 100.0}, "preempts_per_request": 1.5}
    b = {"wrk": {"requestsPerSecond": 300.0}}
    failed = {"error": "boom"}
    assert bestRound([a]) is a
    assert bestRound([a, failed, b]) == {
        **b,
        "rounds_rps": [100.0, None, 300.0],
        "rounds_rps_per_proxy_cpu_s": [None, None, None],
        "rounds_connections": [[], None, []],
        "rounds_preempts_per_request": [1.5, None, None],
    }
    assert bestRound([failed]) is failed


def test_bestRoundNginxConnections() -> None:
    """The connections each round's workers held; an nginx master holds none."""
    processes = [
        {"role": MASTER, "connections_midway": 0},
        {"role": "worker", "connections_midway": 20},
        {"role": "worker", "connections_midway": 30},
    ]
    row = {"wrk": {"requestsPerSecond": 1.0}, "proxy_processes": processes}
    assert bestRound([row, row])["rounds_connections"] == [[20, 30], [20, 30]]


def sampleRow(
    workers: int,
    rps: float,
    p99: float,
    perCpu: float,
    preempts: float | None = None,
    nginx: bool = False,
) -> dict[str, Any]:
    """One row as L{bench.workers.rowFigures} makes it (switches if C{preempts})."""
    cpu = rps * 10 / perCpu
    requests = int(rps * 10)
    processes: list[dict[str, Any]]
    if nginx:
        master: dict[str, Any] = {
            "pid": 200, "name": "nginx", "cpu_s": 0.0, "role": MASTER,
            "connections_midway": 0,
        }  # fmt: skip
        processes = [master] + [
            {"pid": 201 + i, "name": "nginx", "cpu_s": cpu / workers,
             "role": "worker", "connections_midway": 50 // workers}
            for i in range(workers)
        ]  # fmt: skip
    else:
        processes = [
            {"pid": 100 + i, "name": "twistd" if i == 0 else "python3",
             "cpu_s": cpu / workers, "role": "owner" if i == 0 else "descendant",
             "connections_midway": 25}
            for i in range(workers)
        ]  # fmt: skip
    switches = None
    if preempts is not None:
        counts: dict[int, tuple[int, int]] = {
            p["pid"]: (
                0,
                round(requests * preempts / workers) if p["cpu_s"] else 0,
            )
            for p in processes
        }
        for p in processes:
            p["voluntary_switches"], p["nonvoluntary_switches"] = counts[p["pid"]]
        switches = TreeSwitches(
            voluntary=0,
            nonvoluntary=sum(n for _, n in counts.values()),
            processes=counts,
            unknown=0,
            threads=1,
        )
    row: dict[str, Any] = {
        "workers": workers,
        "wrk": {**wrk(rps, p99, requests).asDict(), "errors": 0},
        "rps_per_proxy_cpu_s": perCpu,
        "proxy_cpu_s": cpu,
        "proxy_share": cpu / 20.4,
        "wrk_share": 0.12,
        "backend_share": 0.04,
        "other_share": 0.03,
        "idle_share": 0.31,
        "proxy_processes": processes,
        "proxy_processes_gone": 0,
        "idle_workers": [],
        "listening_processes": len(processes),
        **(switchFigures(switches, requests) if preempts is not None else {}),
    }
    if nginx:
        row["proxy"] = "nginx"
        row["expected_processes"] = row["listening_expected"] = workers + 1
    return row


def sampleReport(twoPerCpu: float = 4500.0, nginx: bool = False) -> dict[str, Any]:
    """A result dict as L{bench.workers.WorkersBench.run} makes it (with nginx's
    rows if C{nginx}, and context switches then)."""
    one = sampleRow(1, 4000.0, 12.0, 5000.0, 0.0 if nginx else None)
    two = sampleRow(2, 6000.0, 9.0, twoPerCpu, 1.4 if nginx else None)
    rows = {"1": one, "2": two}
    ratios = workerRatios(rows)
    report: dict[str, Any] = {
        "settings": {"seconds": 10.0, "warmup": 2.0, "connections": 50,
                     "counts": [1, 2], "rounds": 1},
        "machine": {"cpu_count": 2, "usable_cpus": 2},
        "backend": "nginx (one process, return 200)",
        "rows": rows,
        "ratios": ratios,
        "verdict": verdict(ratios),
    }  # fmt: skip
    if nginx:
        report["nginx_rows"] = {
            "1": sampleRow(1, 40_000.0, 2.0, 45_000.0, 0.01, nginx=True),
            "2": sampleRow(2, 48_000.0, 4.0, 45_000.0, 0.3, nginx=True),
        }
        report["nginx_ratios"] = workerRatios(report["nginx_rows"])
        report["relative_to_nginx"] = relativeToNginx(ratios, report["nginx_ratios"])
    return report


def test_workerRatios() -> None:
    """Two workers over one: req/s, p99, req/s per proxy CPU-second, CPU."""
    report = sampleReport()
    assert report["ratios"] == {
        "rps": pytest.approx(1.5),
        "p99": pytest.approx(0.75),
        "rps_per_proxy_cpu_s": pytest.approx(0.9),
        "proxy_cpu_s": pytest.approx(1.5 / 0.9),
    }
    assert report["verdict"] is True
    assert workerRatios({"1": report["rows"]["1"]}) is None
    assert workerRatios({**report["rows"], "2": {"error": "x"}}) is None


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        ({"rps_per_proxy_cpu_s": CPU_EFFICIENCY_TARGET}, True),
        ({"rps_per_proxy_cpu_s": 0.89}, False),
        ({"rps_per_proxy_cpu_s": None}, None),
        (None, None),
    ],
)
def test_verdict(ratios: dict[str, Any] | None, expected: bool | None) -> None:
    assert verdict(ratios) is expected


def test_summariseWorkers() -> None:
    """The table, the ratio row, the verdict, the per-process split."""
    text = summariseWorkers(sampleReport())
    lines = text.splitlines()
    assert "Workers: twisted-proxy with [proxy] workers = 1 and 2" in text
    assert "(2 CPUs)" in text
    one = next(line for line in lines if line.startswith("  1 worker "))
    two = next(line for line in lines if line.startswith("  2 workers"))
    assert one.split()[2:6] == ["4,000", "12.00", "ms", "5,000"]
    assert two.split()[2:6] == ["6,000", "9.00", "ms", "4,500"]
    assert one.split()[6:12] == ["39%", "12%", "4%", "3%", "31%", "1"]
    assert two.split()[6:12] == ["65%", "12%", "4%", "3%", "31%", "2"]
    ratio = next(line for line in lines if line.startswith("  ratio 2w/1w"))
    assert ratio.split()[2:] == ["1.50x", "0.75x", "0.90x"]
    assert (
        "  req/s per proxy CPU-second, 2 workers / 1: 0.90x (target >= 0.9x): PASS"
        in lines
    )
    assert "  total req/s, 2 workers / 1: 1.50x (no target)" in lines
    assert (
        "  2 workers: proxy CPU by process: owner twistd 6.7 s (50%) 25 conns, "
        "descendant python3 6.7 s (50%) 25 conns" in lines
    )
    assert one.split()[12:] == ["0", "-", "-"]
    assert "WARNING" not in text
    assert "per round" not in text
    assert "nginx" not in "\n".join(lines[lines.index("") + 1 :]).replace(
        "nginx (one process", ""
    )


def test_relativeToNginx() -> None:
    """twisted-proxy's 2w/1w ratios over nginx's; nothing without either."""
    ours = {"rps": 1.2, "rps_per_proxy_cpu_s": 0.7, "p99": 1.0}
    theirs = {"rps": 1.5, "rps_per_proxy_cpu_s": 1.0, "p99": 2.0}
    relative = relativeToNginx(ours, theirs)
    assert relative is not None
    assert set(relative) == {"rps", "rps_per_proxy_cpu_s"}
    assert relative["rps"] == pytest.approx(0.8)
    assert relative["rps_per_proxy_cpu_s"] == pytest.approx(0.7)
    assert relativeToNginx(ours, None) is None
    assert relativeToNginx(None, theirs) is None
    assert relativeToNginx(ours, {"rps": None, "rps_per_proxy_cpu_s": 0.0}) == {
        "rps": None,
        "rps_per_proxy_cpu_s": None,
    }


def test_summariseWorkersNginx() -> None:
    """nginx's rows and ratio row under twisted-proxy's, preemptions and sleeps
    per request, nginx's own 2w/1w ratios and twisted-proxy's relative to them;
    the target line as it was."""
    text = summariseWorkers(sampleReport(nginx=True))
    lines = text.splitlines()
    assert "  reference: nginx as the proxy, a master and 1 and 2 workers " in text
    head = next(line for line in lines if "req/CPU-s" in line)
    assert head.split()[-2:] == ["preempts/req", "sleeps/req"]
    one = next(line for line in lines if line.startswith("  1 worker "))
    two = next(line for line in lines if line.startswith("  2 workers"))
    assert one.split()[12:] == ["0", "0.00", "0.00"]
    assert two.split()[12:] == ["0", "1.40", "0.00"]
    nginx1 = next(line for line in lines if line.startswith("  nginx 1w "))
    nginx2 = next(line for line in lines if line.startswith("  nginx 2w "))
    assert nginx1.split()[2:7] == ["40,000", "2.00", "ms", "45,000", "44%"]
    assert nginx1.split()[11:] == ["2", "0", "0.01", "0.00"]
    assert nginx2.split()[11:] == ["3", "0", "0.30", "0.00"]
    ratio = next(line for line in lines if line.startswith("  nginx 2w/1w"))
    assert ratio.split()[2:] == ["1.20x", "2.00x", "1.00x"]
    order = [lines.index(line) for line in (one, two, nginx1, nginx2, ratio)]
    assert order == sorted(order)
    assert (
        "  req/s per proxy CPU-second, 2 workers / 1: 0.90x (target >= 0.9x): PASS"
        in lines
    )
    assert (
        "  nginx as the proxy, 2 workers / 1: req/s 1.20x, "
        "req per CPU-second 1.00x (no target)" in lines
    )
    assert "  twisted-proxy's 2w/1w req/CPU-s relative to nginx's: 0.90x" in lines
    assert (
        "  2 workers: proxy CPU by process: owner twistd 6.7 s (50%) 25 conns "
        "0.70 preempts/req, descendant python3 6.7 s (50%) 25 conns "
        "0.70 preempts/req" in lines
    )
    assert (
        "  nginx 2w: proxy CPU by process: master nginx 0.0 s (0%) 0 conns "
        "0.00 preempts/req, worker nginx 5.3 s (50%) 25 conns 0.15 preempts/req, "
        "worker nginx 5.3 s (50%) 25 conns 0.15 preempts/req" in lines
    )
    assert "WARNING" not in text
    assert "NOTE" not in text


def test_summariseWorkersNginxFailed() -> None:
    """A failed nginx row is said; nothing relative to it is worked out."""
    report = sampleReport(nginx=True)
    report["nginx_rows"]["2"] = {"workers": 2, "proxy": "nginx", "error": "boom"}
    report["nginx_ratios"] = workerRatios(report["nginx_rows"])
    report["relative_to_nginx"] = relativeToNginx(
        report["ratios"], report["nginx_ratios"]
    )
    lines = summariseWorkers(report).splitlines()
    assert "  nginx 2w      failed: boom" in lines
    assert not any(line.startswith("  nginx 2w/1w") for line in lines)
    assert (
        "  nginx as the proxy, 2 workers / 1: req/s -, req per CPU-second - "
        "(no target)" in lines
    )
    assert "  twisted-proxy's 2w/1w req/CPU-s relative to nginx's: -" in lines


def test_summariseWorkersSwitchNotes() -> None:
    """Counts that could not be read, and threads (whose switches the main
    thread's counts leave out), are said."""
    report = sampleReport(nginx=True)
    two = report["rows"]["2"]
    two["proxy_switches_unknown"] = 1
    two["preempts_per_request"] = None
    two["proxy_max_threads"] = 3
    lines = summariseWorkers(report).splitlines()
    row = next(line for line in lines if line.startswith("  2 workers "))
    assert row.split()[12:] == ["0", "-", "0.00"]
    assert (
        "  WARNING: 2 workers: the context switches of 1 process(es) could not "
        "be read: none per request" in lines
    )
    assert (
        "  NOTE: 2 workers: a process of the tree ran 3 threads; its context "
        "switches are its main thread's" in lines
    )


def test_summariseWorkersRounds() -> None:
    """Each round's requests/s, and how its connections were split."""
    report = sampleReport()
    report["rows"]["2"]["rounds_rps"] = [6000.0, 4000.0, None]
    report["rows"]["2"]["rounds_connections"] = [[25, 25], [2, 48], None]
    report["rows"]["2"]["rounds_rps_per_proxy_cpu_s"] = [4500.0, 3000.0, None]
    report["rows"]["1"]["rounds_rps"] = [4000.0, 3900.0]
    report["rows"]["1"]["rounds_connections"] = [[50], [50]]
    lines = summariseWorkers(report).splitlines()
    assert (
        "  2 workers: req/s per round 6,000 (4,500 req/CPU-s, 25/25 conns), "
        "4,000 (3,000 req/CPU-s, 2/48 conns), -; best shown" in lines
    )
    assert "  1 worker: req/s per round 4,000, 3,900; best shown" in lines
    report["rows"]["2"]["rounds_preempts_per_request"] = [1.4, 1.25, None]
    lines = summariseWorkers(report).splitlines()
    assert (
        "  2 workers: req/s per round 6,000 (4,500 req/CPU-s, 25/25 conns, "
        "1.40 preempts/req), 4,000 (3,000 req/CPU-s, 2/48 conns, "
        "1.25 preempts/req), -; best shown" in lines
    )


def test_summariseWorkersColumnsLineUp() -> None:
    """The ratio rows' cells end where the columns they belong to end, and so do
    the rows' preempts/req and sleeps/req."""
    lines = summariseWorkers(sampleReport(nginx=True)).splitlines()
    head = next(line for line in lines if "req/CPU-s" in line)
    ratio = next(line for line in lines if line.startswith("  ratio 2w/1w"))
    for column, cell in (("req/s", "1.50x"), ("p99", "0.75x"), ("req/CPU-s", "0.90x")):
        assert head.index(column) + len(column) == ratio.index(cell) + len(cell)
    ratio = next(line for line in lines if line.startswith("  nginx 2w/1w"))
    for column, cell in (("req/s", "1.20x"), ("p99", "2.00x"), ("req/CPU-s", "1.00x")):
        assert head.index(column) + len(column) == ratio.index(cell) + len(cell)
    row = next(line for line in lines if line.startswith("  nginx 2w "))
    assert len(row) == len(head)
    assert row.endswith("0.30        0.00")
    assert head.endswith("preempts/req  sleeps/req")


def test_summariseWorkersFail() -> None:
    text = summariseWorkers(sampleReport(twoPerCpu=4250.0))
    assert "0.85x (target >= 0.9x): FAIL" in text


def test_summariseWorkersWarnings() -> None:
    """A missing or idle follower, a failed run, a busy machine are said."""
    report = sampleReport()
    two = report["rows"]["2"]
    two["proxy_processes"][1]["cpu_s"] = 0.1
    two["idle_workers"] = [101]
    two["listening_processes"] = 1
    two["other_share"] = 0.25
    two["outlived_owner"] = [101]
    report["rows"]["1"] = {"workers": 1, "error": "did not start\nmore"}
    text = summariseWorkers(report)
    assert "  1 worker      failed: did not start" in text
    assert "process(es) 101 used under 10% of the tree's CPU" in text
    assert "1 of the processes listened on the port" in text
    assert "other processes took 25% of the machine" in text
    assert "PASS (but one worker served next to nothing: see below)" in text
    assert "outlived the owner's stop" in text
    two["proxy_processes"] = two["proxy_processes"][:1]
    text = summariseWorkers(report)
    assert "1 processes in the proxy's tree, 2 expected" in text


# -- command line --------------------------------------------------------------


def test_workersOnlyFlag() -> None:
    settings = _parseArgs(["--workers-only"])
    assert settings.workersOnly
    assert settings.workers
    assert settings.workersRounds == 1
    assert _parseArgs(["--workers-only", "--rounds", "3"]).workersRounds == 3


def test_workersInTheFullRun() -> None:
    settings = _parseArgs([])
    assert settings.workers
    assert not settings.workersOnly
    assert not _parseArgs(["--no-workers"]).workers


@pytest.mark.parametrize(
    "other",
    ["--ws-only", "--tls-only", "--picks-only", "--compress-only", "--no-workers"],
)
def test_workersOnlyAlone(other: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parseArgs(["--workers-only", other])
    assert "--workers-only goes with none" in capsys.readouterr().err
