"""
Tests for the workers benchmark's pure parts: what it reads from /proc (stat
lines, process trees, listening sockets), the CPU it works out for a tree, its
configurations, its ratios and its summary, and the command-line flags.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from bench import backend
from bench.__main__ import _parseArgs
from bench.nginx import oneProcessConfig
from bench.workers import (
    CPU_EFFICIENCY_TARGET,
    ProcStat,
    TreeCpu,
    bestRound,
    connectedInodes,
    idleWorkers,
    listeningInodes,
    machineSeconds,
    nginxBackendConfig,
    parseStat,
    rowFigures,
    summariseWorkers,
    treeCpu,
    treeSample,
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


class FakeProc:
    """A process table from stat lines, as L{bench.workers.ProcReader}."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = {int(line.split(" ", 1)[0]): line for line in lines}

    def pids(self) -> list[int]:
        return list(self.lines)

    def stat(self, pid: int) -> str | None:
        return self.lines.get(pid)


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


def test_bestRound() -> None:
    """The round with the most requests/s, every round's listed; failures kept out."""
    a = {"wrk": {"requestsPerSecond": 100.0}}
    b = {"wrk": {"requestsPerSecond": 300.0}}
    failed = {"error": "boom"}
    assert bestRound([a]) is a
    assert bestRound([a, failed, b]) == {
        **b,
        "rounds_rps": [100.0, None, 300.0],
        "rounds_rps_per_proxy_cpu_s": [None, None, None],
        "rounds_connections": [[], None, []],
    }
    assert bestRound([failed]) is failed


def sampleReport(twoPerCpu: float = 4500.0) -> dict[str, Any]:
    """A result dict as L{bench.workers.WorkersBench.run} makes it."""

    def row(workers: int, rps: float, p99: float, perCpu: float) -> dict[str, Any]:
        cpu = rps * 10 / perCpu
        processes = [
            {"pid": 100 + i, "name": "twistd" if i == 0 else "python3",
             "cpu_s": cpu / workers, "role": "owner" if i == 0 else "descendant",
             "connections_midway": 25}
            for i in range(workers)
        ]  # fmt: skip
        return {
            "workers": workers,
            "wrk": {**wrk(rps, p99, int(rps * 10)).asDict(), "errors": 0},
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
            "listening_processes": workers,
        }

    rows = {"1": row(1, 4000.0, 12.0, 5000.0), "2": row(2, 6000.0, 9.0, twoPerCpu)}
    ratios = workerRatios(rows)
    return {
        "settings": {"seconds": 10.0, "warmup": 2.0, "connections": 50,
                     "counts": [1, 2], "rounds": 1},
        "machine": {"cpu_count": 2, "usable_cpus": 2},
        "backend": "nginx (one process, return 200)",
        "rows": rows,
        "ratios": ratios,
        "verdict": verdict(ratios),
    }  # fmt: skip


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
    assert "WARNING" not in text
    assert "per round" not in text


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


def test_summariseWorkersColumnsLineUp() -> None:
    """The ratio row's cells end where the columns they belong to end."""
    lines = summariseWorkers(sampleReport()).splitlines()
    head = next(line for line in lines if "req/CPU-s" in line)
    ratio = next(line for line in lines if line.startswith("  ratio 2w/1w"))
    for column, cell in (("req/s", "1.50x"), ("p99", "0.75x"), ("req/CPU-s", "0.90x")):
        assert head.index(column) + len(column) == ratio.index(cell) + len(cell)


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
