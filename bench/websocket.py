"""The WebSocket part of ``python -m bench``: twisted-proxy's bridge against direct.

One Autobahn backend (L{bench.wspeers} ``serve``) and the clients on the load
CPU; twisted-proxy alone on the proxy CPU with one route, C{/} to
C{ws://127.0.0.1:BACKEND/}. Each figure is measured on a direct connection to
the backend and through the proxy, in the same run:

1. Echo: 50 connections (C{--connections}), each keeping 8 messages of 64 bytes
   in flight and sending one more for every echo, for the same time as the
   throughput part after a warm-up: messages/s (round trips), round-trip times,
   and the CPU time per message of the backend and of the proxy. The proxy
   reads each message twice (the client's, the backend's echo) where the
   backend reads it once and writes it once.
2. Idle connections: 5,000 WebSockets opened and left idle, each process's RSS
   taken before and after: KiB per connection of the backend alone (direct)
   and of the proxy (proxied), each in a fresh process, from its RSS after
   one echo (its code loaded) to its RSS with every connection open.
3. Slow reader: one client reads the backend's firehose (1 GiB in 64 KiB
   messages, C{--transfer-mib}) through the proxy at C{--ws-rate} MB/s, much
   slower than the backend can push; the proxy's RSS at the start and at its
   peak, and whether every byte came (count and CRC-32). A proxy that relays
   without flow control buffers what the reader has not taken yet, and its
   RSS grows towards the size of the transfer; under L{FLAT_GROWTH_MB} of growth
   counts as flat.

Every descriptor-hungry process inherits a soft C{RLIMIT_NOFILE} raised for
the idle part (the bench raises its own before starting them; the peers raise
theirs to the hard limit), and the proxy's limit is read back from
C{/proc/PID/limits}. Run with ``python -m bench`` or alone with C{--ws-only};
the figures also go to C{bench/results/websocket.json}.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import wspeers
from bench._procs import (
    Child,
    ChildError,
    Children,
    RSSSampler,
    busyShares,
    cpuSeconds,
    cpuTimes,
    freePort,
    statusKb,
    waitForListener,
    waitForPortFile,
)
from bench.tls import twistd

TWISTED_PROXY = "twisted-proxy"
DIRECT = "direct"
MIB = 1 << 20
# RSS growth of the proxy during the slow reader under which it counts as flat.
FLAT_GROWTH_MB = 50.0
# Share of the proxy's CPU taken by other processes above which a row is suspect.
CONTENTION = 0.05
# A proxy less busy than this was held back by the load side, not by itself.
SATURATED = 0.9
# Descriptors besides the connections themselves (logs, listeners, pipes).
_SPARE_FILES = 256
_SETTLE_SECONDS = 1.0


def _pause(seconds: float) -> None:
    """Sleep between polls of another process, which has no Deferred to wait on."""
    time.sleep(seconds)  # noqa: TID251


@dataclass(frozen=True)
class WebSocketSettings:
    """How long and how hard to run each figure."""

    seconds: float
    warmup: float
    connections: int = 50
    window: int = 8
    messageBytes: int = 64
    idleConnections: int = 5000
    transferBytes: int = 1 << 30
    frameBytes: int = 64 * 1024
    rateMB: float = 64.0
    proxied: bool = True


def twistedProxyWebSocketConfig(port: int, backendPort: int) -> str:
    """twisted-proxy bridging every WebSocket on C{/} to one backend."""
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{port}:interface=127.0.0.1"\n'
        "\n"
        "[[route]]\n"
        'path = "/"\n'
        f'to = "ws://127.0.0.1:{backendPort}/"\n'
    )


def openFilesLimit(limits: str) -> tuple[int | None, int | None]:
    """The soft and hard C{Max open files} from the text of C{/proc/PID/limits}."""
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            fields = line[len("Max open files") :].split()
            if len(fields) < 2:
                break
            soft, hard = (None if f == "unlimited" else int(f) for f in fields[:2])
            return soft, hard
    return None, None


def processFileLimit(pid: int) -> tuple[int | None, int | None]:
    """The soft and hard descriptor limits of a running process."""
    try:
        return openFilesLimit(Path(f"/proc/{pid}/limits").read_text())
    except (OSError, ValueError):
        return None, None


def ensureFileLimit(needed: int) -> tuple[int, int]:
    """Raise this process's soft (and, as root, hard) C{RLIMIT_NOFILE} to C{needed}.

    Children started afterwards inherit it. Returns the limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft, hard
    newHard = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, newHard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def kibPerConnection(
    beforeKb: int | None, afterKb: int | None, connections: int
) -> float | None:
    """RSS growth per connection in KiB, from two C{/proc} C{kB} (KiB) figures."""
    if beforeKb is None or afterKb is None or connections <= 0:
        return None
    return (afterKb - beforeKb) / connections


def _mb(kb: int | None) -> float | None:
    """C{kB} from /proc (KiB) in MB (10^6 bytes)."""
    return None if kb is None else kb * 1024 / 1e6


def _ratio(a: float | None, b: float | None) -> float | None:
    """C{a / b} when both are known."""
    return a / b if a is not None and b else None


def _figure(row: dict[str, Any] | None, key: str) -> float | None:
    """A figure of a row that worked, else C{None}."""
    if not row or row.get("error"):
        return None
    value = row.get(key)
    return float(value) if value is not None else None


def webSocketRatios(report: dict[str, Any]) -> dict[str, float | None]:
    """Proxied figures over direct ones, where both were measured."""
    echo = report.get("echo") or {}
    idle = report.get("idle") or {}
    direct, proxied = echo.get(DIRECT), echo.get(TWISTED_PROXY)
    return {
        "messages_per_second": _ratio(
            _figure(proxied, "messages_per_second"),
            _figure(direct, "messages_per_second"),
        ),
        "rtt_p50": _ratio(
            _figure(proxied, "rtt_p50_ms"), _figure(direct, "rtt_p50_ms")
        ),
        "cpu_per_message_proxy_over_backend": _ratio(
            _figure(proxied, "proxy_cpu_us_per_message"),
            _figure(direct, "backend_cpu_us_per_message"),
        ),
        "idle_kib_proxy_over_backend": _ratio(
            _figure(idle.get(TWISTED_PROXY), "proxy_kib_per_connection"),
            _figure(idle.get(DIRECT), "backend_kib_per_connection"),
        ),
    }


def cpuFigures(row: dict[str, Any]) -> None:
    """Add CPU shares and CPU per message to an echo row from its CPU seconds."""
    seconds = row.get("seconds")
    messages = row.get("messages")
    for who in ("backend", "proxy"):
        cpu = row.get(f"{who}_cpu_seconds")
        if cpu is None or not seconds:
            continue
        row[f"{who}_cpu_share"] = cpu / seconds
        if messages:
            row[f"{who}_cpu_us_per_message"] = cpu / messages * 1e6


def isFlat(row: dict[str, Any]) -> bool | None:
    """Whether the proxy's RSS stayed flat during the slow reader."""
    growth = _figure(row, "rss_growth_mb")
    return None if growth is None else growth < FLAT_GROWTH_MB


class WebSocketBench:
    """Runs the WebSocket part: echo, idle connections, slow reader."""

    def __init__(
        self,
        settings: WebSocketSettings,
        children: Children,
        workDir: Path,
        proxyCPU: int,
        loadCPU: int,
        log: Callable[[str], None],
    ) -> None:
        self._s = settings
        self._children = children
        self._workDir = workDir
        self._proxyCPU = proxyCPU
        self._loadCPU = loadCPU
        self._log = log
        self._noBridge: str | None = None

    def run(self) -> dict[str, Any]:
        """Every figure, direct and through twisted-proxy; the report."""
        s = self._s
        limits = ensureFileLimit(2 * s.idleConnections + _SPARE_FILES)
        report: dict[str, Any] = {
            "settings": asdict(s),
            "file_limit": {"soft": limits[0], "hard": limits[1]},
            "versions": _versions(),
        }
        report["echo"] = self._echo()
        report["idle"] = self._idle()
        report["slow_reader"] = self._slowReader() if s.proxied else {}
        report["ratios"] = webSocketRatios(report)
        if self._noBridge:
            report["no_bridge"] = self._noBridge
        return report

    # -- processes ----------------------------------------------------------

    def _startBackend(self, tag: str) -> tuple[Child, int]:
        """A fresh backend on the load CPU; it and its port."""
        portFile = self._workDir / f"ws-backend-{tag}.port"
        portFile.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "bench.wspeers",
            "serve",
            "--port-file",
            str(portFile),
            "--lifetime",
            "1800",
        ]
        child = self._children.start(f"ws-backend-{tag}", argv, cpu=self._loadCPU)
        return child, waitForPortFile(child, portFile)

    def _startProxy(self, backendPort: int, tag: str) -> tuple[Child, int] | None:
        """twisted-proxy on the proxy CPU, checked with one echo; C{None} if not."""
        if self._noBridge:
            return None
        port = freePort()
        config = self._workDir / f"twisted-proxy-ws-{tag}.toml"
        config.write_text(twistedProxyWebSocketConfig(port, backendPort))
        argv = [str(twistd()), "-n", "--pidfile=", "proxy", "--config", str(config)]
        child = self._children.start(
            f"ws-twisted-proxy-{tag}", argv, cpu=self._proxyCPU, cwd=self._workDir
        )
        try:
            waitForListener(child, port)
        except ChildError as e:
            self._children.stop(child)
            self._noBridge = f"twisted-proxy did not start: {e}"
            self._log(f"WebSocket: {self._noBridge}")
            return None
        problem = wspeers.echoOnce(port)
        if problem:
            self._children.stop(child)
            self._noBridge = f"twisted-proxy does not bridge WebSockets: {problem}"
            self._log(f"WebSocket: {self._noBridge}; proxied rows skipped")
            return None
        return child, port

    def _peer(self, name: str, args: list[str], timeout: float) -> tuple[int, str]:
        """Run one client command of L{bench.wspeers} on the load CPU."""
        argv = [sys.executable, "-m", "bench.wspeers", *args]
        return self._children.run(name, argv, self._loadCPU, timeout)

    # -- 1. echo ------------------------------------------------------------

    def _echo(self) -> dict[str, Any]:
        """Messages/s with the backend alone, then through twisted-proxy."""
        rows: dict[str, Any] = {}
        backend, backendPort = self._startBackend("echo")
        try:
            rows[DIRECT] = self._echoRun(backend, None, backendPort, DIRECT)
            if self._s.proxied:
                started = self._startProxy(backendPort, "echo")
                if started is None:
                    rows[TWISTED_PROXY] = {"error": self._noBridge}
                else:
                    proxy, port = started
                    try:
                        rows[TWISTED_PROXY] = self._echoRun(
                            backend, proxy, port, TWISTED_PROXY
                        )
                    finally:
                        self._children.stop(proxy)
        finally:
            self._children.stop(backend)
        return rows

    def _echoArgs(
        self, port: int, seconds: float, resultFile: Path, watch: dict[str, Child]
    ) -> list[str]:
        s = self._s
        return [
            "echo-load",
            "--port",
            str(port),
            "--connections",
            str(s.connections),
            "--window",
            str(s.window),
            "--size",
            str(s.messageBytes),
            "--seconds",
            str(seconds),
            "--result-file",
            str(resultFile),
            *(f"--watch={name}={child.pid}" for name, child in watch.items()),
        ]

    def _echoRun(
        self, backend: Child, proxy: Child | None, port: int, name: str
    ) -> dict[str, Any]:
        """Warm up, then one measured echo run; the row.

        The load generator itself reads the CPU time of the backend and the
        proxy when it starts and stops measuring, so that neither its start-up
        nor its closing handshakes are in the figures.
        """
        s = self._s
        slug = "direct" if proxy is None else "twisted-proxy"
        self._log(
            f"WebSocket: {name}: echo, {s.connections} connections x {s.window} "
            f"in flight, {s.messageBytes} B: warm-up {s.warmup:.0f} s, "
            f"then {s.seconds:.0f} s"
        )
        watch = {"backend": backend, **({"proxy": proxy} if proxy else {})}
        resultFile = self._workDir / f"ws-echo-{slug}.json"
        try:
            self._peer(
                f"ws-echo-{slug}-warmup",
                self._echoArgs(port, s.warmup, resultFile, {}),
                s.warmup + 60,
            )
            resultFile.unlink(missing_ok=True)
            code, output = self._peer(
                f"ws-echo-{slug}",
                self._echoArgs(port, s.seconds, resultFile, watch),
                s.seconds + 60,
            )
        except ChildError as e:
            return {"error": str(e)}
        row = _readJSON(resultFile)
        if row is None:
            return {"error": f"no result from the load generator\n{output[-500:]}"}
        if code != 0 or not row.get("ok"):
            errors = row.get("errors") or []
            row["error"] = (
                f"echo-load failed: {errors[:3]}, {row.get('bad_echoes')} wrong "
                f"echoes\n{output[-500:]}"
            )
        cpuFigures(row)
        if proxy is not None:
            row["rss_peak_mb"] = _mb(statusKb(proxy.pid, "VmHWM"))
            share = row.get("proxy_cpu_share")
            busy = row.get("cpu_busy") or {}
            if self._children.pinned and share is not None:
                proxyBusy = busy.get(str(self._proxyCPU))
                if proxyBusy is not None:
                    row["proxy_cpu_other_share"] = max(0.0, proxyBusy - share)
            if not proxy.alive():
                row["error"] = f"twisted-proxy died:\n{proxy.tail()}"
        return row

    # -- 2. idle connections ------------------------------------------------

    def _idle(self) -> dict[str, Any]:
        """RSS per idle connection: the backend alone, then twisted-proxy."""
        rows: dict[str, Any] = {DIRECT: self._idleRun(proxied=False)}
        if self._s.proxied:
            rows[TWISTED_PROXY] = self._idleRun(proxied=True)
        return rows

    def _idleRun(self, proxied: bool) -> dict[str, Any]:
        """Fresh processes; open the idle connections; measure; stop them all."""
        n = self._s.idleConnections
        name = TWISTED_PROXY if proxied else DIRECT
        slug = "twisted-proxy" if proxied else "direct"
        backend, backendPort = self._startBackend(f"idle-{slug}")
        try:
            proxy: Child | None = None
            port = backendPort
            if proxied:
                started = self._startProxy(backendPort, "idle")
                if started is None:
                    return {"error": self._noBridge}
                proxy, port = started
            elif problem := wspeers.echoOnce(backendPort):
                return {"error": f"the backend does not echo: {problem}"}
            try:
                return self._idleMeasure(name, backend, backendPort, proxy, port, n)
            finally:
                if proxy is not None:
                    self._children.stop(proxy)
        finally:
            self._children.stop(backend)

    def _idleMeasure(
        self,
        name: str,
        backend: Child,
        backendPort: int,
        proxy: Child | None,
        port: int,
        n: int,
    ) -> dict[str, Any]:
        """Open C{n} idle WebSockets through C{port}; RSS before and after."""
        self._log(f"WebSocket: {name}: {n:,} idle connections")
        row: dict[str, Any] = {"connections": n}
        measured = [("backend", backend)] + ([("proxy", proxy)] if proxy else [])
        before = {who: statusKb(child.pid, "VmRSS") for who, child in measured}
        if proxy is not None:
            soft, hard = processFileLimit(proxy.pid)
            row["proxy_file_limit"] = {"soft": soft, "hard": hard}
        statusFile = self._workDir / f"ws-idle-{name}.json"
        statusFile.unlink(missing_ok=True)
        timeout = 60.0 + n / 100
        client = self._children.start(
            f"ws-idle-{'direct' if proxy is None else 'twisted-proxy'}",
            [
                sys.executable,
                "-m",
                "bench.wspeers",
                "idle",
                "--port",
                str(port),
                "--connections",
                str(n),
                "--status-file",
                str(statusFile),
                "--lifetime",
                str(timeout + 60),
            ],
            cpu=self._loadCPU,
        )
        try:
            status = self._waitIdle(client, statusFile, timeout)
            if status is None:
                return {
                    **row,
                    "error": f"the idle client gave no status\n{client.tail()}",
                }
            _pause(_SETTLE_SECONDS)
            after = {who: statusKb(child.pid, "VmRSS") for who, child in measured}
            stats = wspeers.fetchStats(backendPort)
            status = _readJSON(statusFile) or status
        finally:
            self._children.stop(client)
        row.update(
            open=status.get("open"),
            failed=status.get("failed"),
            closed=status.get("closed"),
            seconds_to_open=status.get("seconds_to_open"),
            backend_open=None if stats is None else stats.get("open"),
        )
        opened = int(status.get("open") or 0)
        for who, _ in measured:
            row[f"{who}_rss_before_mb"] = _mb(before[who])
            row[f"{who}_rss_after_mb"] = _mb(after[who])
            row[f"{who}_kib_per_connection"] = kibPerConnection(
                before[who], after[who], opened
            )
        if opened != n or status.get("failed") or status.get("closed"):
            errors = status.get("errors") or []
            row["error"] = (
                f"{opened:,} of {n:,} connections open, {status.get('failed')} "
                f"failed, {status.get('closed')} closed: {errors[:3]}"
            )
        elif row["backend_open"] != n:
            row["error"] = f"the backend had {row['backend_open']} connections open"
        if proxy is not None and not proxy.alive():
            row["error"] = f"twisted-proxy died:\n{proxy.tail()}"
        return row

    def _waitIdle(
        self, client: Child, statusFile: Path, timeout: float
    ) -> dict[str, Any] | None:
        """The idle client's status once every connection is open or failed."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            status = _readJSON(statusFile) or status
            if status and status.get("done"):
                return status
            if not client.alive():
                return status
            _pause(0.1)
        return status

    # -- 3. slow reader -----------------------------------------------------

    def _slowReader(self) -> dict[str, Any]:
        """The firehose through twisted-proxy to a client reading slowly."""
        backend, backendPort = self._startBackend("firehose")
        try:
            started = self._startProxy(backendPort, "firehose")
            if started is None:
                return {TWISTED_PROXY: {"error": self._noBridge}}
            proxy, port = started
            try:
                row = self._slowMeasure(backend, backendPort, proxy, port)
                return {TWISTED_PROXY: row}
            finally:
                self._children.stop(proxy)
        finally:
            self._children.stop(backend)

    def _slowMeasure(
        self, backend: Child, backendPort: int, proxy: Child, port: int
    ) -> dict[str, Any]:
        """Run the slow reader while sampling the proxy's and backend's RSS."""
        s = self._s
        size = s.transferBytes
        timeout = size / (s.rateMB * 1e6) * 3 + 30
        self._log(
            f"WebSocket: {TWISTED_PROXY}: {size // MIB} MiB of {s.frameBytes // 1024} "
            f"KiB messages to a client reading at {s.rateMB:.0f} MB/s"
        )
        resultFile = self._workDir / "ws-slow-read.json"
        resultFile.unlink(missing_ok=True)
        startKb = statusKb(proxy.pid, "VmRSS")
        backendStartKb = statusKb(backend.pid, "VmRSS")
        cpuBefore, systemBefore = cpuSeconds(proxy.pid), cpuTimes()
        began = time.monotonic()
        with (
            RSSSampler(proxy.pid) as sampler,
            RSSSampler(backend.pid) as backendSampler,
        ):
            try:
                code, output = self._peer(
                    "ws-slow-read",
                    [
                        "slow-read",
                        "--port",
                        str(port),
                        "--size",
                        str(size),
                        "--message-size",
                        str(s.frameBytes),
                        "--rate",
                        str(s.rateMB),
                        "--result-file",
                        str(resultFile),
                        "--timeout",
                        str(timeout),
                        "--stats-port",
                        str(backendPort),
                    ],
                    timeout + 15,
                )
            except ChildError as e:
                return {"error": str(e), "log": proxy.tail()}
        elapsed = time.monotonic() - began
        cpuAfter, systemAfter = cpuSeconds(proxy.pid), cpuTimes()
        peakKb = statusKb(proxy.pid, "VmHWM")
        row: dict[str, Any] = _readJSON(resultFile) or {
            "error": f"no result from the slow reader\n{output[-500:]}",
            "bytes_ok": False,
        }
        if code != 0 and "error" not in row:
            row["error"] = "bytes or CRC wrong"
        row["rate_mb"] = s.rateMB
        row["rss_start_mb"] = _mb(startKb)
        row["rss_peak_mb"] = _mb(peakKb)
        row["rss_peak_sampled_mb"] = _mb(sampler.peakKb)
        if startKb is not None and peakKb is not None:
            row["rss_growth_mb"] = _mb(max(peakKb, sampler.peakKb) - startKb)
        row["backend_rss_start_mb"] = _mb(backendStartKb)
        row["backend_rss_peak_sampled_mb"] = _mb(backendSampler.peakKb)
        busy = busyShares(systemBefore, systemAfter)
        row["cpu_busy"] = {str(cpu): share for cpu, share in busy.items()}
        if cpuBefore is not None and cpuAfter is not None and elapsed > 0:
            row["proxy_cpu_share"] = (cpuAfter - cpuBefore) / elapsed
        row["flat"] = isFlat(row)
        if not proxy.alive():
            row["error"] = f"twisted-proxy died:\n{proxy.tail()}"
        return row


def _versions() -> dict[str, str]:
    """The versions of the libraries both sides run on."""
    versions: dict[str, str] = {}
    for name in ("autobahn", "twisted", "twisted-proxy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def _readJSON(path: Path) -> dict[str, Any] | None:
    """A JSON object from C{path}, or C{None} if it is missing or half-written."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# -- the summary ----------------------------------------------------------------


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _failed(row: dict[str, Any]) -> str | None:
    """The first line of a row's error, if it has one."""
    error = row.get("error")
    if not error:
        return None
    return str(error).splitlines()[0][:64]


def summariseWebSocket(report: dict[str, Any]) -> str:
    """The human-readable summary of the WebSocket part."""
    s = report["settings"]
    lines = [
        "",
        "WebSocket: Autobahn backend and clients on the load CPU, twisted-proxy "
        "alone on the proxy CPU",
        "",
        f"Echo: {s['connections']} connections x {s['window']} messages of "
        f"{s['messageBytes']} B in flight, {s['seconds']:.0f} s after a "
        f"{s['warmup']:.0f} s warm-up",
        "",
        f"  {'':<16}{'msg/s':>10}{'p50 RTT':>10}{'p99 RTT':>10}"
        f"{'proxy CPU/msg':>15}{'backend CPU/msg':>17}{'proxy CPU':>11}",
    ]
    echo = report.get("echo") or {}
    for name, row in echo.items():
        if _failed(row) and not row.get("messages_per_second"):
            lines.append(f"  {name:<16}failed: {_failed(row)}")
            continue
        lines.append(
            f"  {name:<16}{_fmt(row.get('messages_per_second'), ',.0f'):>10}"
            f"{_fmt(row.get('rtt_p50_ms'), '.2f', ' ms'):>10}"
            f"{_fmt(row.get('rtt_p99_ms'), '.2f', ' ms'):>10}"
            f"{_fmt(row.get('proxy_cpu_us_per_message'), '.1f', ' µs'):>15}"
            f"{_fmt(row.get('backend_cpu_us_per_message'), '.1f', ' µs'):>17}"
            f"{_fmt(row.get('proxy_cpu_share'), '.0%'):>11}"
        )
        if _failed(row):
            lines.append(f"  {'':<16}error: {_failed(row)}")
        busy = row.get("cpu_busy") or {}
        if busy:
            shares = ", ".join(f"CPU {cpu} {share:.0%}" for cpu, share in busy.items())
            lines.append(f"  {'':<16}busy: {shares} (a full one is the limit)")
        other = row.get("proxy_cpu_other_share")
        share = row.get("proxy_cpu_share")
        if other is not None and other > CONTENTION:
            lines.append(
                f"  WARNING: other processes took {other:.0%} of the proxy's CPU "
                "meanwhile: unreliable"
            )
        elif share is not None and share < SATURATED:
            lines.append(
                f"  {name} was {share:.0%} busy: its msg/s understate it "
                "(compare CPU/msg)"
            )
    ratios = report.get("ratios") or {}
    if ratios.get("messages_per_second") is not None:
        cpu = ratios.get("cpu_per_message_proxy_over_backend")
        lines.append(
            f"  proxied / direct: msg/s {_fmt(ratios['messages_per_second'], '.2f')}x"
            f", p50 RTT {_fmt(ratios.get('rtt_p50'), '.2f')}x; proxy CPU per message"
            f" / backend's: {_fmt(cpu, '.2f')}x (both ways against one echo)"
        )
    idle = report.get("idle") or {}
    if idle:
        n = s["idleConnections"]
        lines += [
            "",
            f"Idle: {n:,} WebSockets open and idle, RSS growth per connection "
            "(fresh processes)",
            "",
            f"  {'':<16}{'backend':>12}{'proxy':>12}{'proxy RSS':>20}{'open in':>10}",
        ]
        for name, row in idle.items():
            if _failed(row) and row.get("backend_kib_per_connection") is None:
                lines.append(f"  {name:<16}failed: {_failed(row)}")
                continue
            rss = (
                f"{_fmt(row.get('proxy_rss_before_mb'), '.0f')} -> "
                f"{_fmt(row.get('proxy_rss_after_mb'), '.0f')} MB"
                if "proxy_rss_after_mb" in row
                else "-"
            )
            lines.append(
                f"  {name:<16}"
                f"{_fmt(row.get('backend_kib_per_connection'), '.1f', ' KiB'):>12}"
                f"{_fmt(row.get('proxy_kib_per_connection'), '.1f', ' KiB'):>12}"
                f"{rss:>20}{_fmt(row.get('seconds_to_open'), '.1f', ' s'):>10}"
            )
            if _failed(row):
                lines.append(f"  {'':<16}error: {_failed(row)}")
        ratio = ratios.get("idle_kib_proxy_over_backend")
        if ratio is not None:
            lines.append(
                f"  proxy KiB per connection / backend's (direct): {ratio:.2f}x "
                "(the proxy holds two sockets and a frame relay for each)"
            )
        limit = (idle.get(TWISTED_PROXY) or {}).get("proxy_file_limit")
        if limit:
            lines.append(f"  twisted-proxy's open-files limit: {limit['soft']:,}")
    slow = (report.get("slow_reader") or {}).get(TWISTED_PROXY)
    if slow:
        lines += [
            "",
            f"Slow reader through {TWISTED_PROXY}: {s['transferBytes'] // MIB} MiB "
            f"in {s['frameBytes'] // 1024} KiB messages, read at "
            f"{s['rateMB']:.0f} MB/s",
            "",
        ]
        if _failed(slow) and "rss_peak_mb" not in slow:
            lines.append(f"  failed: {_failed(slow)}")
        else:
            flat = slow.get("flat")
            verdict = "-" if flat is None else "flat" if flat else "GROWS"
            lines.append(
                f"  received {slow.get('received', 0):,} / {slow.get('size', 0):,}"
                f" bytes {'ok' if slow.get('bytes_ok') else 'BAD'}, CRC "
                f"{'ok' if slow.get('crc_ok') else 'BAD'}, "
                f"{_fmt(slow.get('mb_per_s'), '.0f')} MB/s"
            )
            lines.append(
                f"  proxy RSS at start {_fmt(slow.get('rss_start_mb'), '.1f')} MB, "
                f"peak {_fmt(slow.get('rss_peak_mb'), '.1f')} MB (growth "
                f"{_fmt(slow.get('rss_growth_mb'), '.1f')} MB: {verdict}, "
                f"< {FLAT_GROWTH_MB:.0f} MB is flat); backend "
                f"{_fmt(slow.get('backend_rss_start_mb'), '.1f')} -> "
                f"{_fmt(slow.get('backend_rss_peak_sampled_mb'), '.1f')} MB; "
                f"proxy CPU {_fmt(slow.get('proxy_cpu_share'), '.0%')}"
            )
            inFlight = slow.get("in_flight_max_bytes")
            if inFlight is not None:
                lines.append(
                    f"  at most {inFlight / MIB:.1f} MiB sent by the backend and not "
                    "yet read by the client (socket buffers and the proxy)"
                )
            if _failed(slow):
                lines.append(f"  error: {_failed(slow)}")
    if report.get("no_bridge"):
        lines += ["", f"  proxied rows skipped: {report['no_bridge']}"]
    return "\n".join(lines)
