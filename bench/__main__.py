"""``python -m bench``: twisted-proxy against Twisted's own proxy, then memory.

0. Selection cost (L{bench.picks}): in-process on CPU 0, microseconds per
   balancer pick (and release) for 10, 100 and 1,000 members, per method.
   ``--picks-only`` runs just this part.
1. Throughput and latency: a fast backend (L{bench.backend}) and wrk share CPU 1;
   each proxy in turn runs alone on CPU 0 (twisted-proxy under twistd, then
   ``twisted.web.proxy.ReverseProxyResource`` from L{bench.twisted_builtin}), gets a
   short warm-up, then C{wrk -t1 -c50 --latency}. The backend is also measured
   directly, as the ceiling any proxy could reach here. twisted-proxy is measured
   a second time with C{/} routed to C{balancer://web/}: three members
   (C{byrequests}), each a fast backend of its own, also on CPU 1; its figures
   over the single-backend ones are what balancing costs per request. Twisted's
   byte relay (C{twistd portforward}: the same two reads and two writes per
   request, no HTTP) runs the same way, as the floor for anything on Twisted,
   and so do Debian's nginx, HAProxy and Apache, and Traefik and Envoy from
   their PyPI wheels (L{bench.peers}); twisted-proxy's requests per CPU-second
   over Traefik's and Envoy's say whether it is ahead of them per core. Then 10 MiB
   bodies from a static nginx through twisted-proxy, the relay, nginx and
   HAProxy (L{bench.bigresponses}; C{--big-targets none} skips it).
2. Streaming memory: a 1 GiB upload to a backend that reads slowly, and a 1 GiB
   download by a client that reads slowly (L{bench.bigpeers}), through the proxy;
   the proxy's peak RSS shows whether it buffers or pushes back.
3. TLS (L{bench.tls}): twisted-proxy and nginx, same pinning, one fast backend:
   plaintext and HTTPS keep-alive requests/s, plaintext connections/s and full
   TLS handshakes/s, HTTP/2 requests/s (h2load, and curl --http2), with each
   proxy's HTTPS/plaintext ratios and twisted-proxy's over nginx's.
   ``--tls-only`` runs just this part; ``--tls-targets none`` skips it.
4. WebSockets (L{bench.websocket}): twisted-proxy's bridge against a direct
   connection to an Autobahn backend: messages/s echoed over 50 connections,
   RSS per idle connection with 5,000 open, and the proxy's RSS while a client
   reads 1 GiB of messages slowly. ``--ws-only`` runs just this part;
   ``--no-ws`` skips it.
5. Compression (L{bench.compress}): gzip MiB/s of the proxy's C{GzipStream}
   against Apache's mod_deflate (pinned like the proxies) and zlib alone, at
   levels 1, 6 and 9 over the same 100 MiB of HTML and JSON, with the ratios.
   ``--compress-only`` runs just this part.
6. Workers (L{bench.workers}): twisted-proxy with C{[proxy] workers = 1} and with
   C{workers = 2}, nothing pinned, in front of one nginx: requests/s, p99 and
   requests per CPU-second of the proxy's whole process tree, with the CPU
   shares of the proxy, wrk and nginx. ``--workers-only`` runs just this part;
   ``--no-workers`` skips it.
7. CONNECT tunnels and tcp listeners (L{bench.tunnel}): 1 GiB down and up on
   one connection, direct, through a CONNECT tunnel and through a tcp
   listener (MB/s, the proxy's CPU seconds per GiB), new connections per
   second through the tcp listener and through Twisted's C{portforward}, and
   the proxy's RSS per idle tunnel with 5,000 open.
   ``--tunnel-only`` runs just this part; ``--no-tunnel`` skips it.
8. AJP (L{bench.ajp}): one Tomcat (Debian's tomcat10) with an AJP and an
   HTTP/1.1 connector, serving a 100-byte static file; Tomcat and wrk on
   CPU 1, twisted-proxy alone on CPU 0 with an C{ajp://} and an C{http://}
   route to it: requests/s, p99 and the proxy's (and Tomcat's) CPU per
   request over AJP, over HTTP and directly (the ceiling), with the AJP/HTTP
   ratio. Skipped, saying so, without Tomcat.
   ``--ajp-only`` runs just this part; ``--no-ajp`` skips it.

A summary is printed and written to ``bench/results/latest.json``; each child's
output goes to ``bench/results/logs/``. Every child is stopped at the end, also on
error or Ctrl-C. All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import http.client
import io
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import (
    ajp,
    backend,
    bigresponses,
    compress,
    peers,
    picks,
    tls,
    tunnel,
    websocket,
    workers,
)
from bench._procs import (
    ROOT,
    Child,
    ChildError,
    Children,
    RSSSampler,
    busyShares,
    cpuSeconds,
    cpuTimes,
    freePort,
    pinning,
    portforwardCommand,
    statusKb,
    waitForListener,
    waitForPortFile,
)
from bench.wrk import WrkError, WrkResult, ensureWrk, parseWrk, wrkCommand

RESULTS = ROOT / "bench" / "results"
PROFILE = RESULTS / "twisted-proxy.pstats"
PROFILE_LB = RESULTS / "twisted-proxy-lb3.pstats"
PROXY_CPU = 0
LOAD_CPU = 1
GIB = 1 << 30
MIB = 1 << 20
RPS_TARGET = 2.5
RSS_TARGET_MB = 100.0
# Share of the proxy's CPU taken by other processes above which figures are suspect.
CONTENTION = 0.05
TWISTED_PROXY = "twisted-proxy"
TWISTED_PROXY_LB = "twisted-proxy-lb3"
BUILTIN = "twisted.web.proxy"
# Twisted's own byte relay (twistd portforward): per request the same two
# reads and two writes as a proxy, no HTTP at all. The floor for anything on
# Twisted; twisted-proxy aims at FLOOR_TARGET of its requests/s.
RELAY = "twisted byte relay"
FLOOR_TARGET = 0.75
# twisted-proxy's p99 latency at most this times nginx's, same load.
P99_TARGET = 3.0
BALANCER_MEMBERS = 3
# The peers twisted-proxy aims to be ahead of per core (requests per CPU-second).
PER_CORE_PEERS = (peers.TRAEFIK, peers.ENVOY)
PICKS_JSON = RESULTS / "picks.json"
TLS_JSON = RESULTS / "tls.json"
WS_JSON = RESULTS / "websocket.json"
COMPRESS_JSON = RESULTS / "compress.json"
WORKERS_JSON = RESULTS / "workers.json"
TUNNEL_JSON = RESULTS / "tunnel.json"
AJP_JSON = RESULTS / "ajp.json"


def twistd() -> Path:
    """The twistd of the environment the benchmark runs in."""
    beside = Path(sys.executable).with_name("twistd")
    return beside if beside.exists() else ROOT / ".venv" / "bin" / "twistd"


def twistedProxyConfig(port: int, backendPort: int) -> str:
    """The TOML configuration twisted-proxy is benchmarked with."""
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{port}:interface=127.0.0.1"\n'
        "\n"
        "[[route]]\n"
        'path = "/"\n'
        f'to = "http://127.0.0.1:{backendPort}/"\n'
    )


def twistedProxyBalancerConfig(port: int, backendPorts: Sequence[int]) -> str:
    """The same configuration with C{/} going to a C{byrequests} balancer."""
    members = "".join(
        f'\n[[balancer.web.member]]\nurl = "http://127.0.0.1:{p}"\nroute = "{i}"\n'
        for i, p in enumerate(backendPorts, 1)
    )
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{port}:interface=127.0.0.1"\n'
        "\n"
        "[[route]]\n"
        'path = "/"\n'
        'to = "balancer://web/"\n'
        "\n"
        "[balancer.web]\n"
        'method = "byrequests"\n' + members
    )


def twistedProxyCommand(
    workDir: Path,
    port: int,
    backendPorts: Sequence[int],
    twistdOptions: Sequence[str] = (),
    balanced: bool = False,
) -> list[str]:
    """Write a config into C{workDir}; the command that runs twisted-proxy with it.

    This is the one place to change if the way twisted-proxy is started changes.
    C{twistdOptions} go before the plugin name (C{--profile=...}, for instance).
    The first backend is used alone, or with C{balanced} every one of them as
    the members of a balancer.
    """
    config = workDir / f"twisted-proxy-{port}.toml"
    config.write_text(
        twistedProxyBalancerConfig(port, backendPorts)
        if balanced
        else twistedProxyConfig(port, backendPorts[0])
    )
    return [
        str(twistd()),
        "-n",
        "--pidfile=",
        *twistdOptions,
        "proxy",
        "--config",
        str(config),
    ]


def twistedProxyBalancerCommand(
    workDir: Path, port: int, backendPorts: Sequence[int]
) -> list[str]:
    """The command that runs twisted-proxy balancing over every backend."""
    return twistedProxyCommand(workDir, port, backendPorts, balanced=True)


def builtinProxyCommand(
    workDir: Path, port: int, backendPorts: Sequence[int]
) -> list[str]:
    """The command that runs Twisted's own proxy (L{bench.twisted_builtin})."""
    return [
        sys.executable,
        "-m",
        "bench.twisted_builtin",
        "--port",
        str(port),
        "--backend-port",
        str(backendPorts[0]),
        "--lifetime",
        "900",
    ]


def relayCommand(workDir: Path, port: int, backendPorts: Sequence[int]) -> list[str]:
    """The command that runs Twisted's byte relay in front of the first backend."""
    return portforwardCommand(str(twistd()), port, backendPorts[0])


PROXIES: dict[str, Callable[[Path, int, Sequence[int]], list[str]]] = {
    TWISTED_PROXY: twistedProxyCommand,
    TWISTED_PROXY_LB: twistedProxyBalancerCommand,
    BUILTIN: builtinProxyCommand,
    RELAY: relayCommand,
    **{name: functools.partial(peers.peerCommand, name) for name in peers.PEERS},
}


@dataclass
class Settings:
    """How long and how hard to run each part."""

    quick: bool
    seconds: float
    warmup: float
    baselineSeconds: float
    connections: int
    transferBytes: int
    rateMB: float
    targets: list[str]
    streamTargets: list[str]
    rounds: int
    profile: bool
    picks: bool
    picksOnly: bool
    picksSeconds: float
    tlsTargets: list[str]
    tlsOnly: bool
    tlsRounds: int
    ws: bool
    wsOnly: bool
    wsIdle: int
    wsRate: float
    compressOnly: bool = False
    bigTargets: list[str] = field(default_factory=list)
    workers: bool = True
    workersOnly: bool = False
    workersRounds: int = 1
    tunnel: bool = True
    tunnelOnly: bool = False
    tunnelIdle: int = 5000
    ajp: bool = True
    ajpOnly: bool = False
    ajpRounds: int = 2


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into an exception so every child gets stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


def _mb(kb: int | None) -> float | None:
    """C{kB} from /proc (KiB) in MB (10^6 bytes)."""
    return None if kb is None else kb * 1024 / 1e6


def _awaitRoutes(
    child: Child, port: int, problem: str | None, timeout: float = 10.0
) -> str | None:
    """
    Ask a peer that listens before it has loaded its routes (Traefik) for C{/}
    again until the backend's answer comes back, it dies or C{timeout} passes;
    the last problem seen, or C{None}.
    """
    deadline = time.monotonic() + timeout
    while problem and child.alive() and time.monotonic() < deadline:
        time.sleep(0.1)  # noqa: TID251 (another process; no Deferred to wait on)
        problem = backend.checkAnswer(port)
    return problem


def _backendStats(port: int) -> dict[str, int] | None:
    """The counters of the fast backend (see L{bench.backend.Counters})."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/__bench_stats")
        stats = json.loads(connection.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return {
        "connections": int(stats["connections"]),
        "requests": int(stats["requests"]),
    }


class Bench:
    """Runs the parts of the benchmark and collects their results."""

    def __init__(self, settings: Settings, children: Children, workDir: Path) -> None:
        self._s = settings
        self._children = children
        self._workDir = workDir
        self._wrk = ""

    def _log(self, message: str) -> None:
        """Say what is happening now."""
        print(f"bench: {message}", flush=True)

    def _startPortFileServer(self, name: str, argv: list[str]) -> tuple[Child, int]:
        """Start one of our own servers on the load CPU; return it and its port."""
        portFile = self._workDir / f"{name}.port"
        portFile.unlink(missing_ok=True)
        child = self._children.start(
            name, [*argv, "--port-file", str(portFile)], cpu=LOAD_CPU
        )
        return child, waitForPortFile(child, portFile)

    def _startProxy(
        self, name: str, backendPorts: Sequence[int], tag: str
    ) -> tuple[Child, int]:
        """Start a proxy on the proxy CPU and wait until it accepts connections."""
        port = freePort()
        profiled = {TWISTED_PROXY: PROFILE, TWISTED_PROXY_LB: PROFILE_LB}
        if name in profiled and self._s.profile and tag.startswith("throughput"):
            options = [
                f"--profile={profiled[name]}",
                "--profiler=cprofile",
                "--savestats",
            ]
            argv = twistedProxyCommand(
                self._workDir,
                port,
                backendPorts,
                options,
                balanced=name == TWISTED_PROXY_LB,
            )
        else:
            argv = PROXIES[name](self._workDir, port, backendPorts)
        logName = f"{_slug(name)}-{tag}"
        child = self._children.start(logName, argv, cpu=PROXY_CPU, cwd=self._workDir)
        waitForListener(child, port)
        return child, port

    def _runWrk(self, name: str, port: int, seconds: float) -> WrkResult:
        """One wrk run against 127.0.0.1:C{port} from the load CPU."""
        argv = wrkCommand(self._wrk, port, seconds, self._s.connections)
        code, output = self._children.run(name, argv, LOAD_CPU, seconds + 30)
        if code != 0:
            raise WrkError(f"wrk exited with {code}:\n{output[-1500:]}")
        return parseWrk(output)

    def throughput(self) -> dict[str, Any]:
        """Backend alone, then each proxy: wrk figures, CPU use and peak RSS."""
        s = self._s
        self._wrk = ensureWrk()
        rows: dict[str, Any] = {}
        # One backend for every proxy; more as the members of the balancer.
        count = BALANCER_MEMBERS if TWISTED_PROXY_LB in s.targets else 1
        backends: list[Child] = []
        ports: list[int] = []
        try:
            for i in range(count):
                child, port = self._startPortFileServer(
                    "backend" if i == 0 else f"backend{i + 1}",
                    [sys.executable, "-m", "bench.backend", "--lifetime", "900"],
                )
                backends.append(child)
                ports.append(port)
            self._log(f"backend direct: wrk {s.baselineSeconds:.0f} s")
            direct = self._runWrk("wrk-backend", ports[0], s.baselineSeconds)
            rows["backend direct"] = {"wrk": direct.asDict()}
            rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in s.targets}
            for r in range(s.rounds):
                for name in s.targets:
                    tag = f"round{r + 1}" if s.rounds > 1 else ""
                    rounds[name].append(self._proxyThroughput(name, ports, tag))
        finally:
            for child in reversed(backends):
                self._children.stop(child)
        for name, results in rounds.items():
            rows[name] = _best(results)
        return rows

    def _proxyThroughput(
        self, name: str, backendPorts: Sequence[int], tag: str
    ) -> dict[str, Any]:
        """Warm up and measure one proxy in front of the fast backend(s)."""
        s = self._s
        self._log(f"{name}: starting {tag}".rstrip())
        slug = _slug(name)
        try:
            child, port = self._startProxy(
                name, backendPorts, f"throughput{'-' + tag if tag else ''}"
            )
        except (ChildError, tls.ToolError) as e:
            # A peer that is missing and cannot be installed gets a row that
            # says why; the other proxies are still measured.
            self._log(f"{name}: did not start; skipped")
            return {"error": str(e)}
        try:
            problem = backend.checkAnswer(port)
            if name in peers.ROUTES_AFTER_LISTENING:
                problem = _awaitRoutes(child, port, problem)
            if problem:
                self._log(f"{name}: wrong answer; skipped ({problem})")
                return {"error": problem, "log": child.tail()}
            idleKb = statusKb(child.pid, "VmRSS")
            self._log(f"{name}: warm-up {s.warmup:.0f} s, then wrk {s.seconds:.0f} s")
            wrkLog = f"wrk-{slug}{'-' + tag if tag else ''}"
            self._runWrk(f"{wrkLog}-warmup", port, s.warmup)
            statsBefore = [_backendStats(p) for p in backendPorts]
            cpuBefore, systemBefore = cpuSeconds(child.pid), cpuTimes()
            began = time.monotonic()
            result = self._runWrk(wrkLog, port, s.seconds)
            elapsed = time.monotonic() - began
            cpuAfter, systemAfter = cpuSeconds(child.pid), cpuTimes()
            statsAfter = [_backendStats(p) for p in backendPorts]
            peakKb = statusKb(child.pid, "VmHWM")
            if not child.alive():
                return {"error": f"{name} died during the run:\n{child.tail()}"}
        except (ChildError, WrkError) as e:
            return {"error": str(e), "log": child.tail()}
        finally:
            self._children.stop(child)
        row: dict[str, Any] = {
            "wrk": result.asDict(),
            "rss_idle_mb": _mb(idleKb),
            "rss_peak_mb": _mb(peakKb),
        }
        deltas = [
            {key: after[key] - before[key] for key in ("connections", "requests")}
            for before, after in zip(statsBefore, statsAfter, strict=True)
            if before and after
        ]
        if deltas and len(deltas) == len(backendPorts):
            # Upstream connections the proxy opened while measured (to all the
            # backends): a proxy that keeps its connections alive opens few.
            row["upstream_connections"] = sum(d["connections"] for d in deltas)
            row["backend_requests"] = sum(d["requests"] for d in deltas)
            # How the requests were shared out (the unused backends get none).
            row["backend_requests_each"] = [d["requests"] for d in deltas]
        busy = busyShares(systemBefore, systemAfter)
        row["cpu_busy"] = {str(cpu): share for cpu, share in busy.items()}
        if cpuBefore is not None and cpuAfter is not None:
            cpu = cpuAfter - cpuBefore
            row["proxy_cpu_share"] = cpu / elapsed
            if result.requests:
                row["proxy_cpu_us_per_request"] = cpu / result.requests * 1e6
            if self._children.pinned and PROXY_CPU in busy:
                # What else ran on the proxy's CPU: other work on this machine
                # (a test run, a build) makes the figures unreliable.
                row["proxy_cpu_other_share"] = max(
                    0.0, busy[PROXY_CPU] - row["proxy_cpu_share"]
                )
        return row

    def bigResponses(self) -> dict[str, Any]:
        """10 MiB bodies from a static nginx through each proxy: MiB/s, CPU/GiB."""
        s = self._s
        self._wrk = self._wrk or ensureWrk()
        folder = self._workDir / "big-backend"
        folder.mkdir(parents=True, exist_ok=True)
        root = folder / "static"
        bigresponses.writeBody(root)
        port = freePort()
        config = folder / "nginx.conf"
        config.write_text(bigresponses.staticConfig(folder, port, root))
        nginx = tls.ensureTool("nginx", "nginx")
        backendChild = self._children.start(
            "big-backend",
            [nginx, "-p", str(folder), "-c", str(config), "-e", "stderr"],
            cpu=LOAD_CPU,
        )
        rows: dict[str, Any] = {}
        try:
            waitForListener(backendChild, port)
            for name in s.bigTargets:
                rows[name] = self._bigThrough(name, port)
        finally:
            self._children.stop(backendChild)
        return {"rows": rows, "ratios": bigresponses.ratios(rows, TWISTED_PROXY)}

    def _bigThrough(self, name: str, backendPort: int) -> dict[str, Any]:
        """One proxy relaying the 10 MiB body: MiB/s and its CPU per GiB."""
        s = self._s
        self._log(f"big responses: {name}")
        try:
            child, port = self._startProxy(name, [backendPort], "big")
        except ChildError as e:
            return {"error": str(e)}
        try:
            size = bigresponses.fetchSize(port)
            if size != bigresponses.SIZE:
                return {"error": f"GET {bigresponses.PATH} gave {size} bytes"}
            argv = wrkCommand(
                self._wrk,
                port,
                s.seconds,
                bigresponses.CONNECTIONS,
                path=bigresponses.PATH,
            )
            cpuBefore = cpuSeconds(child.pid)
            code, output = self._children.run(
                f"wrk-big-{_slug(name)}", argv, LOAD_CPU, s.seconds + 60
            )
            cpuAfter = cpuSeconds(child.pid)
            if code != 0:
                return {"error": f"wrk exited with {code}:\n{output[-800:]}"}
            result = parseWrk(output)
            peakKb = statusKb(child.pid, "VmHWM")
        except (ChildError, WrkError) as e:
            return {"error": str(e)}
        finally:
            self._children.stop(child)
        mib = result.requests * bigresponses.SIZE / bigresponses.MIB
        row: dict[str, Any] = {
            "mib_per_s": mib / result.seconds if result.seconds else 0.0,
            "errors": result.errors,
            "rss_peak_mb": _mb(peakKb),
        }
        if cpuBefore is not None and cpuAfter is not None and mib:
            row["cpu_s_per_gib"] = (cpuAfter - cpuBefore) / (mib / 1024)
        return row

    def streaming(self) -> dict[str, Any]:
        """For each streaming target, one big upload and one big download."""
        results: dict[str, Any] = {}
        for name in self._s.streamTargets:
            results[name] = {
                direction: self._transfer(name, direction)
                for direction in ("up", "down")
            }
        return results

    def _transfer(self, name: str, direction: str) -> dict[str, Any]:
        """Move one big body through a fresh proxy process; its peak RSS and speed."""
        s = self._s
        size = s.transferBytes
        timeout = size / (s.rateMB * 1e6) * 4 + 30
        self._log(
            f"{name}: {size // MIB} MiB {direction}, slow side at {s.rateMB:.0f} MB/s"
        )
        server, serverPort = self._startPortFileServer(
            f"bigpeers-serve-{direction}",
            [
                sys.executable,
                "-m",
                "bench.bigpeers",
                "serve",
                "--size",
                str(size),
                "--rate",
                str(s.rateMB),
                "--lifetime",
                str(timeout + 60),
            ],
        )
        try:
            try:
                proxy, port = self._startProxy(
                    name, [serverPort], f"stream-{direction}"
                )
            except ChildError as e:
                self._log(f"{name}: did not start; skipped")
                return {"error": str(e)}
            try:
                return self._transferThrough(proxy, port, direction, size, timeout)
            finally:
                self._children.stop(proxy)
        finally:
            self._children.stop(server)

    def _transferThrough(
        self, proxy: Child, port: int, direction: str, size: int, timeout: float
    ) -> dict[str, Any]:
        """Run the client for one transfer while sampling the proxy's memory."""
        resultFile = self._workDir / f"transfer-{proxy.name}.json"
        resultFile.unlink(missing_ok=True)
        command = "upload" if direction == "up" else "download"
        argv = [
            sys.executable,
            "-m",
            "bench.bigpeers",
            command,
            "--port",
            str(port),
            "--size",
            str(size),
            "--result-file",
            str(resultFile),
            "--timeout",
            str(timeout),
        ]
        if direction == "down":
            argv += ["--rate", str(self._s.rateMB)]
        idleKb = statusKb(proxy.pid, "VmRSS")
        cpuBefore, systemBefore = cpuSeconds(proxy.pid), cpuTimes()
        began = time.monotonic()
        with RSSSampler(proxy.pid) as sampler:
            try:
                self._children.run(f"bigpeers-{command}", argv, LOAD_CPU, timeout + 15)
            except ChildError as e:
                return {"error": str(e), "log": proxy.tail()}
        peakKb = statusKb(proxy.pid, "VmHWM")
        elapsed = time.monotonic() - began
        cpuAfter, systemAfter = cpuSeconds(proxy.pid), cpuTimes()
        try:
            result: dict[str, Any] = json.loads(resultFile.read_text())
        except (OSError, ValueError) as e:
            result = {"error": f"no result from the client: {e!r}", "bytes_ok": False}
        result["rss_idle_mb"] = _mb(idleKb)
        result["rss_peak_mb"] = _mb(peakKb)
        result["rss_peak_sampled_mb"] = _mb(sampler.peakKb)
        busy = busyShares(systemBefore, systemAfter)
        result["cpu_busy"] = {str(cpu): share for cpu, share in busy.items()}
        if cpuBefore is not None and cpuAfter is not None and elapsed > 0:
            result["proxy_cpu_share"] = (cpuAfter - cpuBefore) / elapsed
            if self._children.pinned and PROXY_CPU in busy:
                result["proxy_cpu_other_share"] = max(
                    0.0, busy[PROXY_CPU] - result["proxy_cpu_share"]
                )
        if not proxy.alive():
            result["error"] = f"proxy died:\n{proxy.tail()}"
        return result


def _slug(name: str) -> str:
    """A target's name as it goes into log file names."""
    return name.replace(".", "_")


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """Format a figure that may be missing."""
    return "-" if value is None else format(value, spec) + suffix


def _ratio(a: float | None, b: float | None) -> float | None:
    """C{a / b} when both are known."""
    return a / b if a is not None and b else None


def _ratioRow(label: str, ratios: dict[str, Any]) -> str:
    """One ratio row of the throughput table, lined up under its columns."""
    cells = [
        _fmt(ratios[key], ".2f", "x")
        for key in ("rps", "p50", "p99", "rss_peak", "cpu_per_request")
    ]
    return (
        f"  {label:<20}{cells[0]:>10}{cells[1]:>10}{cells[2]:>10}"
        f"{cells[3]:>11}{cells[4]:>10}"
    )


def summarise(report: dict[str, Any]) -> str:
    """The human-readable summary of a whole run."""
    s = report["settings"]
    lines = [
        "",
        "=" * 78,
        f"twisted-proxy benchmark ({'quick' if s['quick'] else 'full'}) "
        f"{report['started']}  commit {_shortCommit(report['commit'])}",
        f"pinning: {report['pinning']}",
        f"load average before the run: {report['loadavg_before']}",
        "=" * 78,
        "",
    ]
    if report.get("picks"):
        lines += [picks.summarise(report["picks"]), ""]
    lines += [
        f"Throughput: wrk -t1 -c{s['connections']} --latency, {s['seconds']:.0f} s "
        f"after a {s['warmup']:.0f} s warm-up (backend direct: {s['baseline']:.0f} s)",
        "",
        f"  {'':<20}{'req/s':>10}{'p50':>10}{'p99':>10}{'peak RSS':>11}"
        f"{'CPU/req':>10}{'CPU':>6}{'errors':>8}{'conns':>8}",
    ]
    rows = report["throughput"]
    for name, row in rows.items():
        if "error" in row:
            first = row["error"].splitlines()[0] if row["error"] else "error"
            lines.append(f"  {name:<20}{'failed: ' + first[:56]}")
            continue
        w = row["wrk"]
        lines.append(
            f"  {name:<20}{w['requestsPerSecond']:>10,.0f}"
            f"{_fmt(w['p50Ms'], '.2f', ' ms'):>10}{_fmt(w['p99Ms'], '.2f', ' ms'):>10}"
            f"{_fmt(row.get('rss_peak_mb'), '.1f', ' MB'):>11}"
            f"{_fmt(row.get('proxy_cpu_us_per_request'), '.0f', ' µs'):>10}"
            f"{_fmt(row.get('proxy_cpu_share'), '.0%'):>6}{w['errors']:>8}"
            f"{_fmt(row.get('upstream_connections'), ',d'):>8}"
        )
    if s.get("profile"):
        lines.append(
            f"  NOTE: {TWISTED_PROXY} and {TWISTED_PROXY_LB} ran under cProfile: "
            "their figures are low"
        )
    ratios = report.get("ratios")
    if ratios:
        lines.append(_ratioRow("ratio tp/builtin", ratios))
        verdict = "PASS" if ratios["rps"] and ratios["rps"] >= RPS_TARGET else "FAIL"
        if report.get("contended"):
            verdict += " (unreliable: CPU 0 was shared, see below)"
        lines.append(f"  req/s target >= {RPS_TARGET}x the built-in proxy: {verdict}")
        cpuRatio = ratios.get("cpu_per_request")
        if cpuRatio:
            lines.append(
                f"  requests per CPU-second (steadier on a busy machine): "
                f"{1 / cpuRatio:.2f}x the built-in proxy"
            )
    floor = report.get("floor_ratios")
    if floor:
        lines.append(_ratioRow("ratio tp/relay", floor))
        verdict = "PASS" if floor["rps"] and floor["rps"] >= FLOOR_TARGET else "FAIL"
        lines.append(
            f"  req/s target >= {FLOOR_TARGET}x Twisted's byte relay (twistd"
            f" portforward, no HTTP): {verdict}"
        )
    versus = report.get("nginx_ratios")
    if versus:
        lines.append(_ratioRow("ratio tp/nginx", versus))
        p99 = versus["p99"]
        verdict = "PASS" if p99 is not None and p99 <= P99_TARGET else "FAIL"
        lines.append(f"  p99 target <= {P99_TARGET}x nginx's: {verdict}")
    for peer in PER_CORE_PEERS:
        peerRatios = report.get(f"{peer}_ratios")
        if peerRatios:
            lines.append(_ratioRow(f"ratio tp/{peer}", peerRatios))
    perCore = report.get("per_core")
    if perCore:
        lines += _perCoreLines(perCore)
    lb = report.get("balancer_ratios")
    if lb:
        lines.append(_ratioRow("ratio lb3/single", lb))
        each = rows[TWISTED_PROXY_LB].get("backend_requests_each")
        split = " / ".join(f"{n:,}" for n in each) if each else "unknown"
        lines.append(
            f"  {TWISTED_PROXY_LB}: / to balancer://web/, byrequests over "
            f"{BALANCER_MEMBERS} fast backends; requests each: {split}"
        )
        extra = lb.get("cpu_us_per_request_extra")
        if extra is not None:
            lines.append(
                f"  balancing costs {extra:+.1f} µs of proxy CPU per request "
                f"(lb3 CPU/req minus single)"
            )
    lines.append(
        "  (CPU/req, CPU: the proxy's CPU time per request and its share of one core;"
        "\n   conns: connections it opened to the backend(s) while measured)"
    )
    for name, row in rows.items():
        other = row.get("proxy_cpu_other_share")
        if other is not None and other > CONTENTION:
            lines.append(
                f"  WARNING: other processes took {other:.0%} of CPU {PROXY_CPU} "
                f"during the {name} run: its figures are unreliable"
            )
        if "rounds_rps" in row:
            each = ", ".join(
                _fmt(r, ",.0f")
                + (f" ({o:.0%} CPU taken)" if o is not None and o > CONTENTION else "")
                for r, o in zip(row["rounds_rps"], row["rounds_other_cpu"], strict=True)
            )
            lines.append(
                f"  {name}: req/s per round {each}; best shown, quiet rounds first"
            )
    big = report.get("big")
    if big:
        lines += bigresponses.summarise(big, TWISTED_PROXY, peers.HAPROXY)
    streaming = report.get("streaming") or {}
    rssTarget = f"< {RSS_TARGET_MB:.0f} MB"
    for name, transfers in streaming.items():
        lines += [
            "",
            f"Streaming through {name}: {s['transfer_bytes'] // MIB} MiB each way, "
            f"slow side reading at {s['rate_mb']:.0f} MB/s",
            "",
            f"  {'':<6}{'received':>13}   {'expected':<13}{'bytes':>7}{'CRC':>5}"
            f"{'MB/s':>8}{'peak RSS':>11}{rssTarget:>9}{'CPU':>6}",
        ]
        for direction, t in transfers.items():
            if "rss_peak_mb" not in t and "error" in t:
                first = t["error"].splitlines()[0] if t["error"] else "error"
                lines.append(f"  {direction:<6}failed: {first[:64]}")
                continue
            peak = t.get("rss_peak_mb")
            verdict = (
                "-" if peak is None else "PASS" if peak < RSS_TARGET_MB else "FAIL"
            )
            received = t.get("received", -1)
            lines.append(
                f"  {direction:<6}{received:>13,} / {t['size']:<13,}"
                f"{'ok' if t.get('bytes_ok') else 'BAD':>7}"
                f"{'ok' if t.get('crc_ok') else 'BAD':>5}"
                f"{_fmt(t.get('mb_per_s'), '.0f'):>8}"
                f"{_fmt(peak, '.1f', ' MB'):>11}{verdict:>9}"
                f"{_fmt(t.get('proxy_cpu_share'), '.0%'):>6}"
            )
            other = t.get("proxy_cpu_other_share")
            if other is not None and other > CONTENTION:
                lines.append(
                    f"        WARNING: other processes took {other:.0%} of CPU "
                    f"{PROXY_CPU} meanwhile"
                )
            if "error" in t:
                lines.append(f"        error: {t['error'].splitlines()[0][:64]}")
    lines += ["", f"JSON: {report['json_path']}", f"logs: {report['log_dir']}", ""]
    return "\n".join(lines)


def _best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most requests/s among the least disturbed; lists all."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[-1]
    quiet = [r for r in good if (r.get("proxy_cpu_other_share") or 0) <= CONTENTION]
    best = max(quiet or good, key=lambda r: float(r["wrk"]["requestsPerSecond"]))
    if len(results) == 1:
        return best
    return {
        **best,
        "rounds_rps": [
            r["wrk"]["requestsPerSecond"] if r in good else None for r in results
        ],
        "rounds_other_cpu": [r.get("proxy_cpu_other_share") for r in results],
    }


def _ratios(rows: dict[str, Any]) -> dict[str, float | None] | None:
    """twisted-proxy's figures over the built-in proxy's, where both ran."""
    ours, theirs = rows.get(TWISTED_PROXY), rows.get(BUILTIN)
    if not ours or not theirs or "error" in ours or "error" in theirs:
        return None
    return {
        "rps": _ratio(
            ours["wrk"]["requestsPerSecond"], theirs["wrk"]["requestsPerSecond"]
        ),
        "p50": _ratio(ours["wrk"]["p50Ms"], theirs["wrk"]["p50Ms"]),
        "p99": _ratio(ours["wrk"]["p99Ms"], theirs["wrk"]["p99Ms"]),
        "rss_peak": _ratio(ours.get("rss_peak_mb"), theirs.get("rss_peak_mb")),
        "cpu_per_request": _ratio(
            ours.get("proxy_cpu_us_per_request"),
            theirs.get("proxy_cpu_us_per_request"),
        ),
    }


def _floorRatios(rows: dict[str, Any]) -> dict[str, float | None] | None:
    """twisted-proxy's figures over Twisted's byte relay's, where both ran."""
    relay, single = rows.get(RELAY), rows.get(TWISTED_PROXY)
    if not relay or not single or "error" in relay or "error" in single:
        return None
    return _ratios({TWISTED_PROXY: single, BUILTIN: relay})


def _nginxRatios(rows: dict[str, Any]) -> dict[str, float | None] | None:
    """twisted-proxy's figures over nginx's, where both ran."""
    nginx, single = rows.get(peers.NGINX), rows.get(TWISTED_PROXY)
    if not nginx or not single or "error" in nginx or "error" in single:
        return None
    return _ratios({TWISTED_PROXY: single, BUILTIN: nginx})


def _peerRatios(rows: dict[str, Any], peer: str) -> dict[str, float | None] | None:
    """twisted-proxy's figures over peer C{peer}'s, where both ran."""
    theirs, single = rows.get(peer), rows.get(TWISTED_PROXY)
    if not theirs or not single or "error" in theirs or "error" in single:
        return None
    return _ratios({TWISTED_PROXY: single, BUILTIN: theirs})


def _perSecond(row: dict[str, Any] | None) -> float | None:
    """Requests per CPU-second of the proxy in a throughput row, if measured."""
    if not row or "error" in row:
        return None
    us = row.get("proxy_cpu_us_per_request")
    return 1e6 / us if us else None


def _perCore(rows: dict[str, Any]) -> dict[str, Any] | None:
    """
    Requests per CPU-second of the proxy for twisted-proxy and each of
    L{PER_CORE_PEERS} that ran, twisted-proxy's over each, and whether it is
    ahead of all of them (C{None} unless every one was measured); C{None} if
    twisted-proxy was not measured or none of them was a target.
    """
    ours = _perSecond(rows.get(TWISTED_PROXY))
    if ours is None or not any(peer in rows for peer in PER_CORE_PEERS):
        return None
    theirs = {peer: _perSecond(rows.get(peer)) for peer in PER_CORE_PEERS}
    over = {peer: _ratio(ours, value) for peer, value in theirs.items()}
    measured = [r for r in over.values() if r is not None]
    return {
        "requests_per_cpu_second": {TWISTED_PROXY: ours, **theirs},
        "tp_over": over,
        "ahead": all(r > 1 for r in measured) if len(measured) == len(over) else None,
    }


def _perCoreLines(perCore: dict[str, Any]) -> list[str]:
    """The summary's lines on requests per CPU-second against Traefik and Envoy."""
    each = perCore["requests_per_cpu_second"]
    cells = [f"{TWISTED_PROXY} {each[TWISTED_PROXY]:,.0f}"]
    for peer in PER_CORE_PEERS:
        ratio = perCore["tp_over"][peer]
        cells.append(
            f"{peer} {_fmt(each[peer], ',.0f')}"
            + ("" if ratio is None else f" (tp {ratio:.2f}x)")
        )
    ahead = perCore["ahead"]
    names = " and ".join(p.capitalize() for p in PER_CORE_PEERS)
    if ahead is None:
        verdict = "unknown (not every one was measured)"
    elif ahead:
        verdict = "YES"
    else:
        behind = [p for p, r in perCore["tp_over"].items() if r is not None and r <= 1]
        verdict = "NO (not ahead of " + ", ".join(behind) + ")"
    return [
        "  requests per CPU-second of the proxy: " + ", ".join(cells),
        f"  twisted-proxy ahead of {names} per core: {verdict}",
    ]


def _balancerRatios(rows: dict[str, Any]) -> dict[str, float | None] | None:
    """The 3-member balancer's figures over twisted-proxy's single-backend ones."""
    lb, single = rows.get(TWISTED_PROXY_LB), rows.get(TWISTED_PROXY)
    if not lb or not single or "error" in lb or "error" in single:
        return None
    ratios = _ratios({TWISTED_PROXY: lb, BUILTIN: single})
    if ratios is None:
        return None
    lbCpu = lb.get("proxy_cpu_us_per_request")
    singleCpu = single.get("proxy_cpu_us_per_request")
    ratios["cpu_us_per_request_extra"] = (
        lbCpu - singleCpu if lbCpu is not None and singleCpu is not None else None
    )
    return ratios


def _profileSummary(path: Path, name: str, top: int = 30) -> str:
    """The functions twisted-proxy spent most time in, from twistd's cProfile."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return f"\n{name} under cProfile (throughput part):\n" + out.getvalue()


def _loadavg() -> str:
    """The 1, 5 and 15-minute load averages, to spot a busy machine."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _shortCommit(commit: str) -> str:
    """A commit id shortened for display, keeping a C{+dirty} mark."""
    head, plus, mark = commit.partition("+")
    return head[:10] + plus + mark


def _verdicts(report: dict[str, Any]) -> dict[str, bool | None]:
    """Whether each target was met (C{None} where it was not measured)."""
    ratios = report.get("ratios") or {}
    rps = ratios.get("rps")
    verdicts: dict[str, bool | None] = {
        f"rps_ratio_at_least_{RPS_TARGET}": None if rps is None else rps >= RPS_TARGET,
        "ahead_of_traefik_and_envoy_per_core": (report.get("per_core") or {}).get(
            "ahead"
        ),
    }
    streaming = (report.get("streaming") or {}).get(TWISTED_PROXY) or {}
    for direction in ("up", "down"):
        t = streaming.get(direction) or {}
        peak = t.get("rss_peak_mb")
        verdicts[f"stream_{direction}_rss_below_{RSS_TARGET_MB:.0f}mb"] = (
            None if peak is None else peak < RSS_TARGET_MB
        )
        verdicts[f"stream_{direction}_bytes_ok"] = (
            None if not t else bool(t.get("bytes_ok") and t.get("crc_ok"))
        )
    return verdicts


def _commit() -> str:
    """The commit the benchmark ran on, marked if the tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def _parseArgs(argv: list[str] | None) -> Settings:
    """The settings from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s wrk runs and 256 MiB transfers instead of 10 s and 1 GiB",
    )
    parser.add_argument("--seconds", type=float, help="wrk measuring run length")
    parser.add_argument("--warmup", type=float, help="wrk warm-up run length")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--transfer-mib", type=int, help="size of each big body")
    parser.add_argument(
        "--rate",
        type=float,
        default=250.0,
        help="MB/s at which the slow side reads (default 250)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(
            [TWISTED_PROXY, TWISTED_PROXY_LB, BUILTIN, RELAY, *peers.PEERS]
        ),
        help="proxies for the throughput part, comma-separated (or 'none')",
    )
    parser.add_argument(
        "--big-targets",
        default=",".join([TWISTED_PROXY, RELAY, peers.NGINX, peers.HAPROXY]),
        help="proxies for the 10 MiB responses, comma-separated (or 'none')",
    )
    parser.add_argument(
        "--stream-targets",
        default=f"{TWISTED_PROXY},{BUILTIN}",
        help="proxies for the streaming part, comma-separated (or 'none')",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure each proxy this many times, alternating, and keep the best "
        "(default 2, or 1 with --quick; the TLS part: 1)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run twisted-proxy (both rows) under cProfile in the throughput part "
        "(its figures are then slower than real) and print where its time goes; "
        f"stats in {PROFILE.relative_to(ROOT)} and {PROFILE_LB.name}",
    )
    parser.add_argument(
        "--picks-only",
        action="store_true",
        help="only the selection cost per pick (in-process, a few seconds); "
        f"figures in {PICKS_JSON.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--no-picks", action="store_true", help="skip the selection cost part"
    )
    parser.add_argument(
        "--tls-targets",
        default=",".join(tls.TLS_TARGETS),
        help="proxies for the TLS part, comma-separated (or 'none')",
    )
    parser.add_argument(
        "--tls-only",
        action="store_true",
        help=f"only the TLS part; figures in {TLS_JSON.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--ws-only",
        action="store_true",
        help=f"only the WebSocket part; figures in {WS_JSON.relative_to(ROOT)}",
    )
    parser.add_argument("--no-ws", action="store_true", help="skip the WebSocket part")
    parser.add_argument(
        "--ws-idle",
        type=int,
        help="idle WebSockets opened for the RSS per connection "
        "(default 5000, or 2000 with --quick)",
    )
    parser.add_argument(
        "--ws-rate",
        type=float,
        default=64.0,
        help="MB/s at which the slow WebSocket client reads (default 64)",
    )
    parser.add_argument(
        "--compress-only",
        action="store_true",
        help="only the gzip part (100 MiB, or 32 MiB with --quick); figures in "
        f"{COMPRESS_JSON.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--workers-only",
        action="store_true",
        help="only the workers part (twisted-proxy with 1 and 2 workers, unpinned); "
        f"figures in {WORKERS_JSON.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--no-workers", action="store_true", help="skip the workers part"
    )
    parser.add_argument(
        "--tunnel-only",
        action="store_true",
        help="only the CONNECT tunnel part; figures in "
        f"{TUNNEL_JSON.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--no-tunnel", action="store_true", help="skip the CONNECT tunnel part"
    )
    parser.add_argument(
        "--ajp-only",
        action="store_true",
        help="only the AJP part (twisted-proxy to Tomcat over AJP and over HTTP); "
        f"figures in {AJP_JSON.relative_to(ROOT)}",
    )
    parser.add_argument("--no-ajp", action="store_true", help="skip the AJP part")
    parser.add_argument(
        "--tunnel-idle",
        type=int,
        help="idle tunnels opened for the RSS per tunnel "
        "(default 5000, or 2000 with --quick)",
    )
    parser.add_argument(
        "--picks-seconds",
        type=float,
        help="time per method and member count (default 0.2, or 0.05 with --quick)",
    )
    args = parser.parse_args(argv)

    def names(value: str) -> list[str]:
        chosen = [n.strip() for n in value.split(",") if n.strip() not in ("", "none")]
        for n in chosen:
            if n not in PROXIES:
                parser.error(f"unknown proxy {n!r}; choose from {', '.join(PROXIES)}")
        return chosen

    def tlsNames(value: str) -> list[str]:
        chosen = [n.strip() for n in value.split(",") if n.strip() not in ("", "none")]
        for n in chosen:
            if n not in tls.TLS_TARGETS:
                known = ", ".join(tls.TLS_TARGETS)
                parser.error(f"unknown TLS target {n!r}; choose from {known}")
        return chosen

    quick = bool(args.quick)
    if args.tls_only and not tlsNames(args.tls_targets):
        parser.error("--tls-only needs at least one TLS target")
    if args.ws_only and (args.tls_only or args.picks_only or args.no_ws):
        parser.error("--ws-only goes with none of --tls-only, --picks-only, --no-ws")
    others = (args.tls_only, args.picks_only, args.ws_only, args.compress_only)
    if args.workers_only and (any(others) or args.no_workers):
        parser.error(
            "--workers-only goes with none of the other --*-only flags, --no-workers"
        )
    if args.tunnel_only and (any(others) or args.workers_only or args.no_tunnel):
        parser.error(
            "--tunnel-only goes with none of the other --*-only flags, --no-tunnel"
        )
    if args.ajp_only and (
        any(others) or args.workers_only or args.tunnel_only or args.no_ajp
    ):
        parser.error("--ajp-only goes with none of the other --*-only flags, --no-ajp")
    return Settings(
        quick=quick,
        seconds=args.seconds or (3.0 if quick else 10.0),
        warmup=args.warmup or (1.0 if quick else 2.0),
        baselineSeconds=3.0 if quick else 5.0,
        connections=args.connections,
        transferBytes=(args.transfer_mib or (256 if quick else 1024)) * MIB,
        rateMB=args.rate,
        targets=names(args.targets),
        streamTargets=names(args.stream_targets),
        rounds=1 if args.profile else max(1, args.rounds or (1 if quick else 2)),
        profile=bool(args.profile),
        picks=not args.no_picks or bool(args.picks_only),
        picksOnly=bool(args.picks_only),
        picksSeconds=args.picks_seconds or (0.05 if quick else 0.2),
        tlsTargets=tlsNames(args.tls_targets),
        tlsOnly=bool(args.tls_only),
        # One round unless asked: the TLS part alone takes about two minutes.
        tlsRounds=max(1, args.rounds) if args.rounds else 1,
        ws=not args.no_ws or bool(args.ws_only),
        wsOnly=bool(args.ws_only),
        wsIdle=args.ws_idle or (2000 if quick else 5000),
        wsRate=args.ws_rate,
        compressOnly=bool(args.compress_only),
        bigTargets=names(args.big_targets),
        workers=not args.no_workers or bool(args.workers_only),
        workersOnly=bool(args.workers_only),
        # One round unless asked: the part adds to every full run.
        workersRounds=max(1, args.rounds) if args.rounds else 1,
        tunnel=not args.no_tunnel or bool(args.tunnel_only),
        tunnelOnly=bool(args.tunnel_only),
        tunnelIdle=args.tunnel_idle or (2000 if quick else 5000),
        ajp=not args.no_ajp or bool(args.ajp_only),
        ajpOnly=bool(args.ajp_only),
        # As the throughput part: the AJP/HTTP ratio moves with the machine.
        ajpRounds=max(1, args.rounds or (1 if quick else 2)),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the summary."""
    settings = _parseArgs(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    if settings.picksOnly:
        return _picksOnly(settings)
    pin, why = pinning()
    if settings.tlsOnly:
        return _tlsOnly(settings, pin, why)
    if settings.wsOnly:
        return _wsOnly(settings, pin, why)
    if settings.compressOnly:
        return _compressOnly(settings, pin, why)
    if settings.workersOnly:
        return _workersOnly(settings)
    if settings.tunnelOnly:
        return _tunnelOnly(settings, pin, why)
    if settings.ajpOnly:
        return _ajpOnly(settings, pin, why)
    logDir = RESULTS / "logs"
    jsonPath = RESULTS / "latest.json"
    report: dict[str, Any] = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _commit(),
        "settings": {
            "quick": settings.quick,
            "seconds": settings.seconds,
            "warmup": settings.warmup,
            "baseline": settings.baselineSeconds,
            "connections": settings.connections,
            "transfer_bytes": settings.transferBytes,
            "rate_mb": settings.rateMB,
            "targets": settings.targets,
            "stream_targets": settings.streamTargets,
            "rounds": settings.rounds,
            "profile": settings.profile,
            "picks_seconds": settings.picksSeconds if settings.picks else None,
            "tls_targets": settings.tlsTargets,
            "ws": settings.ws,
            "ws_idle": settings.wsIdle,
            "ws_rate_mb": settings.wsRate,
            "workers": settings.workers,
            "tunnel": settings.tunnel,
            "tunnel_idle": settings.tunnelIdle,
            "ajp": settings.ajp,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "pinning": (
            f"proxy on CPU {PROXY_CPU}; wrk, backend and peers on CPU {LOAD_CPU}"
            if pin
            else f"none ({why})"
        ),
        "json_path": str(jsonPath),
        "log_dir": str(logDir),
    }
    report["loadavg_before"] = _loadavg()
    began = time.monotonic()
    code = 0
    for stale in [*logDir.glob("*.log"), PROFILE, PROFILE_LB]:
        stale.unlink(missing_ok=True)
    try:
        if settings.picks:
            # First, while no child runs: it shares nothing with them.
            report["picks"] = picks.measure(
                settings.picksSeconds, log=lambda m: print(f"bench: {m}", flush=True)
            )
        with (
            tempfile.TemporaryDirectory(prefix="twisted-proxy-bench-") as tmp,
            Children(logDir, pin) as children,
        ):
            bench = Bench(settings, children, Path(tmp))
            report["throughput"] = bench.throughput() if settings.targets else {}
            report["ratios"] = _ratios(report["throughput"])
            report["balancer_ratios"] = _balancerRatios(report["throughput"])
            report["floor_ratios"] = _floorRatios(report["throughput"])
            report["nginx_ratios"] = _nginxRatios(report["throughput"])
            for peer in PER_CORE_PEERS:
                report[f"{peer}_ratios"] = _peerRatios(report["throughput"], peer)
            report["per_core"] = _perCore(report["throughput"])
            if settings.workers:
                report["workers"] = _workersPart(settings, children, Path(tmp))
            if settings.bigTargets:
                report["big"] = bench.bigResponses()
            report["streaming"] = bench.streaming()
            if settings.ws:
                report["websocket"] = _wsPart(settings, children, Path(tmp))
            if settings.tunnel:
                report["tunnel"] = _tunnelPart(settings, children, Path(tmp))
            if settings.ajp:
                report["ajp"] = _ajpPart(settings, children, Path(tmp))
            if settings.tlsTargets:
                report["tls"] = _tlsPart(settings, children, Path(tmp))
            report["compress"] = _compressPart(settings, children)
    except KeyboardInterrupt:
        print("\nbench: interrupted; every child process has been stopped")
        return 130
    except (WrkError, ChildError, tls.ToolError) as e:
        print(f"bench: failed: {e}", file=sys.stderr)
        report["error"] = str(e)
        code = 1
    report["seconds"] = time.monotonic() - began
    report["contended"] = any(
        (row.get("proxy_cpu_other_share") or 0) > CONTENTION
        for row in (report.get("throughput") or {}).values()
    )
    report["verdicts"] = _verdicts(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    jsonPath.write_text(json.dumps(report, indent=2) + "\n")
    for path, name in ((PROFILE, TWISTED_PROXY), (PROFILE_LB, TWISTED_PROXY_LB)):
        if settings.profile and path.exists():
            print(_profileSummary(path, name))
    if "throughput" in report:
        print(summarise(report))
    if report.get("workers"):
        WORKERS_JSON.write_text(json.dumps(report["workers"], indent=2) + "\n")
        print(workers.summariseWorkers(report["workers"]))
    if report.get("websocket"):
        WS_JSON.write_text(json.dumps(report["websocket"], indent=2) + "\n")
        print(websocket.summariseWebSocket(report["websocket"]))
    if report.get("tunnel"):
        TUNNEL_JSON.write_text(json.dumps(report["tunnel"], indent=2) + "\n")
        print(tunnel.summariseTunnel(report["tunnel"]))
    if report.get("ajp"):
        AJP_JSON.write_text(json.dumps(report["ajp"], indent=2) + "\n")
        print(ajp.summariseAJP(report["ajp"]))
    if report.get("tls"):
        TLS_JSON.write_text(json.dumps(report["tls"], indent=2) + "\n")
        print(tls.summariseTLS(report["tls"]))
        print(f"\nTLS JSON: {TLS_JSON}")
    if report.get("compress"):
        COMPRESS_JSON.write_text(json.dumps(report["compress"], indent=2) + "\n")
        print(compress.summariseCompress(report["compress"]))
    print(f"bench: done in {report['seconds']:.0f} s")
    return code


def _tlsPart(settings: Settings, children: Children, workDir: Path) -> dict[str, Any]:
    """The TLS part (L{bench.tls}), on the same CPUs as the throughput part."""
    return tls.TLSBench(
        tls.TLSSettings(
            seconds=settings.seconds,
            warmup=settings.warmup,
            connections=settings.connections,
            targets=settings.tlsTargets,
            rounds=settings.tlsRounds,
        ),
        children,
        workDir,
        proxyCPU=PROXY_CPU,
        loadCPU=LOAD_CPU,
        log=lambda m: print(f"bench: {m}", flush=True),
    ).run()


def _wsPart(settings: Settings, children: Children, workDir: Path) -> dict[str, Any]:
    """The WebSocket part (L{bench.websocket}), on the same CPUs as the others."""
    return websocket.WebSocketBench(
        websocket.WebSocketSettings(
            seconds=settings.seconds,
            warmup=settings.warmup,
            connections=settings.connections,
            idleConnections=settings.wsIdle,
            transferBytes=settings.transferBytes,
            rateMB=settings.wsRate,
        ),
        children,
        workDir,
        proxyCPU=PROXY_CPU,
        loadCPU=LOAD_CPU,
        log=lambda m: print(f"bench: {m}", flush=True),
    ).run()


def _tunnelPart(
    settings: Settings, children: Children, workDir: Path
) -> dict[str, Any]:
    """The CONNECT tunnel part (L{bench.tunnel}), on the same CPUs as the others."""
    return tunnel.TunnelBench(
        tunnel.TunnelSettings(
            transferBytes=settings.transferBytes,
            idleTunnels=settings.tunnelIdle,
            seconds=settings.seconds,
        ),
        children,
        workDir,
        proxyCPU=PROXY_CPU,
        loadCPU=LOAD_CPU,
        log=lambda m: print(f"bench: {m}", flush=True),
    ).run()


def _tunnelOnly(settings: Settings, pin: bool, why: str) -> int:
    """C{--tunnel-only}: the CONNECT tunnel part alone, saved to L{TUNNEL_JSON}."""
    return _partAlone(
        "CONNECT tunnel",
        TUNNEL_JSON,
        lambda children, folder: _tunnelPart(settings, children, folder),
        tunnel.summariseTunnel,
        settings,
        pin,
        f"proxy on CPU {PROXY_CPU}; destination and clients on CPU {LOAD_CPU}"
        if pin
        else f"none ({why})",
        "settings",
    )


def _ajpPart(settings: Settings, children: Children, workDir: Path) -> dict[str, Any]:
    """The AJP part (L{bench.ajp}), on the same CPUs as the others."""
    return ajp.AJPBench(
        ajp.AJPSettings(
            seconds=settings.seconds,
            warmup=settings.warmup,
            jitWarmup=2.0 if settings.quick else 5.0,
            connections=settings.connections,
            rounds=settings.ajpRounds,
        ),
        children,
        workDir,
        proxyCPU=PROXY_CPU,
        loadCPU=LOAD_CPU,
        log=lambda m: print(f"bench: {m}", flush=True),
    ).run()


def _ajpOnly(settings: Settings, pin: bool, why: str) -> int:
    """C{--ajp-only}: the AJP part alone, saved to L{AJP_JSON}."""
    return _partAlone(
        "AJP",
        AJP_JSON,
        lambda children, folder: _ajpPart(settings, children, folder),
        ajp.summariseAJP,
        settings,
        pin,
        f"proxy on CPU {PROXY_CPU}; Tomcat and wrk on CPU {LOAD_CPU}"
        if pin
        else f"none ({why})",
        "settings",
    )


def _compressPart(settings: Settings, children: Children) -> dict[str, Any]:
    """The compression part (L{bench.compress}), on the same CPUs as the others."""
    return compress.CompressBench(
        compress.CompressSettings(corpusBytes=(32 if settings.quick else 100) * MIB),
        children,
        proxyCPU=PROXY_CPU,
        loadCPU=LOAD_CPU,
        log=lambda m: print(f"bench: {m}", flush=True),
    ).run()


def _workersPart(
    settings: Settings, children: Children, workDir: Path
) -> dict[str, Any]:
    """The workers part (L{bench.workers}): nothing pinned, whatever C{children}."""
    return workers.WorkersBench(
        workers.WorkersSettings(
            seconds=settings.seconds,
            warmup=settings.warmup,
            connections=settings.connections,
            rounds=settings.workersRounds,
        ),
        children,
        workDir,
        log=lambda m: print(f"bench: {m}", flush=True),
    ).run()


def _partAlone(
    title: str,
    results: Path,
    part: Callable[[Children, Path], dict[str, Any]],
    summarise: Callable[[dict[str, Any]], str],
    settings: Settings,
    pin: bool,
    pinning: str | None,
    shown: str,
) -> int:
    """
    One part of the bench alone (C{--ws-only} and the like): C{part} run
    with its children and a work folder, its report saved to C{results}
    with the run's facts (C{pinning}: None to leave it out), summarised
    when it has C{shown}.
    """
    began = time.monotonic()
    report: dict[str, Any] = {}
    code = 0
    try:
        with (
            tempfile.TemporaryDirectory(prefix="twisted-proxy-bench-") as tmp,
            Children(RESULTS / "logs", pin) as children,
        ):
            report = part(children, Path(tmp))
    except KeyboardInterrupt:
        print("\nbench: interrupted; every child process has been stopped")
        return 130
    except (WrkError, ChildError, tls.ToolError) as e:
        print(f"bench: failed: {e}", file=sys.stderr)
        report = {"error": str(e)}
        code = 1
    report.update(
        started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        commit=_commit(),
        quick=settings.quick,
    )
    if pinning is not None:
        report["pinning"] = pinning
    report.update(loadavg_after=_loadavg(), seconds_total=time.monotonic() - began)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    if shown in report:
        heading = f"\n{title} benchmark, commit {_shortCommit(report['commit'])}"
        if pinning is not None:
            heading += f", pinning: {pinning}"
        print(heading)
        print(summarise(report))
    print(f"\nJSON: {results}")
    print(f"bench: done in {report['seconds_total']:.0f} s")
    return code


def _workersOnly(settings: Settings) -> int:
    """C{--workers-only}: the workers part alone, saved to L{WORKERS_JSON}."""
    return _partAlone(
        "Workers",
        WORKERS_JSON,
        lambda children, folder: _workersPart(settings, children, folder),
        workers.summariseWorkers,
        settings,
        False,
        None,
        "rows",
    )


def _compressOnly(settings: Settings, pin: bool, why: str) -> int:
    """C{--compress-only}: the compression part alone, saved to L{COMPRESS_JSON}."""
    began = time.monotonic()
    try:
        with Children(RESULTS / "logs", pin) as children:
            report = _compressPart(settings, children)
    except KeyboardInterrupt:
        print("\nbench: interrupted; every child process has been stopped")
        return 130
    report.update(
        started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        commit=_commit(),
        pinning=f"in-process and Apache on CPU {PROXY_CPU}, curl on CPU {LOAD_CPU}"
        if pin
        else f"none ({why})",
        seconds_total=time.monotonic() - began,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    COMPRESS_JSON.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nCompression benchmark, commit {_shortCommit(report['commit'])}")
    print(compress.summariseCompress(report))
    print(f"\nJSON: {COMPRESS_JSON}")
    print(f"bench: done in {report['seconds_total']:.0f} s")
    return 0


def _wsOnly(settings: Settings, pin: bool, why: str) -> int:
    """C{--ws-only}: the WebSocket part alone, saved to L{WS_JSON}."""
    return _partAlone(
        "WebSocket",
        WS_JSON,
        lambda children, folder: _wsPart(settings, children, folder),
        websocket.summariseWebSocket,
        settings,
        pin,
        f"proxy on CPU {PROXY_CPU}; backend and clients on CPU {LOAD_CPU}"
        if pin
        else f"none ({why})",
        "settings",
    )


def _tlsOnly(settings: Settings, pin: bool, why: str) -> int:
    """C{--tls-only}: the TLS part alone, saved to L{TLS_JSON}."""
    return _partAlone(
        "TLS",
        TLS_JSON,
        lambda children, folder: _tlsPart(settings, children, folder),
        tls.summariseTLS,
        settings,
        pin,
        f"proxy on CPU {PROXY_CPU}; load tools and backend on CPU {LOAD_CPU}"
        if pin
        else f"none ({why})",
        "rows",
    )


def _picksOnly(settings: Settings) -> int:
    """C{--picks-only}: the selection cost table alone, saved to L{PICKS_JSON}."""
    try:
        figures = picks.measure(
            settings.picksSeconds, log=lambda m: print(f"bench: {m}", flush=True)
        )
    except KeyboardInterrupt:
        print("\nbench: interrupted")
        return 130
    figures["commit"] = _commit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    PICKS_JSON.write_text(json.dumps(figures, indent=2) + "\n")
    print()
    print(picks.summarise(figures))
    print(f"\nJSON: {PICKS_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
