"""The CONNECT tunnel and tcp listener part of ``python -m bench``.

One destination (L{bench.tunnelpeers} ``serve``) and the clients on the load
CPU; twisted-proxy alone on the proxy CPU with a C{[listen.connect]} table
that lets tunnels reach the destination and a tcp listener relaying to it.
Each figure is taken on a direct connection to the destination and through
the proxy, in the same run:

1. Throughput: one connection moves C{--transfer-mib} (1 GiB) down (the
   destination sends) and then up (the client sends), as fast as both ends
   go, directly, through a CONNECT tunnel and through the tcp listener:
   MB/s, and the proxy's CPU seconds per GiB relayed.
2. New connections: one client opens, uses (one byte) and closes one
   connection after another for the run's time, through the tcp listener
   and through Twisted's own byte relay (C{twistd portforward}) on the same
   CPU: connections/s and the proxy's CPU per connection.
3. Idle tunnels: C{--tunnel-idle} (5,000) tunnels opened and left idle; the
   proxy's RSS before (after one tunnel, its code loaded) and with all of
   them open: KiB per tunnel.

Run with ``python -m bench`` or alone with C{--tunnel-only}; the figures also
go to C{bench/results/tunnel.json}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._procs import (
    Child,
    ChildError,
    Children,
    cpuSeconds,
    freePort,
    portforwardCommand,
    statusKb,
    waitForListener,
    waitForPortFile,
)
from bench.tls import twistd
from bench.websocket import ensureFileLimit, kibPerConnection

MIB = 1 << 20
GIB = 1 << 30
_SPARE_FILES = 256


def _pause(seconds: float) -> None:
    """Sleep between polls of another process, which has no Deferred to wait on."""
    time.sleep(seconds)  # noqa: TID251


@dataclass(frozen=True)
class TunnelSettings:
    """What the tunnel part measures."""

    transferBytes: int = GIB
    idleTunnels: int = 5000
    seconds: float = 10.0


def twistedProxyTunnelConfig(port: int, destinationPort: int, tcpPort: int) -> str:
    """
    twisted-proxy opening CONNECT tunnels to the destination only on
    C{port}, and relaying every connection to it on C{tcpPort}.
    """
    return (
        "[proxy]\n"
        "access_log = false\n"
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{port}:interface=127.0.0.1"\n'
        "[listen.connect]\n"
        f"allow_ports = [{destinationPort}]\n"
        'allow_destinations = ["127.0.0.1/32"]\n'
        "\n"
        "[[listen]]\n"
        f'endpoint = "tcp:{tcpPort}:interface=127.0.0.1"\n'
        'protocol = "tcp"\n'
        f'to = "tcp://127.0.0.1:{destinationPort}"\n'
    )


def mbPerSecond(row: dict[str, Any] | None) -> float | None:
    """MB/s (10^6 bytes) of a C{stream} result."""
    if not row or not row.get("seconds"):
        return None
    return float(row["bytes"]) / float(row["seconds"]) / 1e6


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def tunnelRatios(report: dict[str, Any]) -> dict[str, float | None]:
    """Tunnel and tcp listener / direct MB/s for each direction."""
    ratios: dict[str, float | None] = {}
    rows = report.get("throughput") or {}
    for direction in ("down", "up"):
        direct = mbPerSecond((rows.get("direct") or {}).get(direction))
        tunnel = mbPerSecond((rows.get("tunnel") or {}).get(direction))
        tcp = mbPerSecond((rows.get("tcp") or {}).get(direction))
        ratios[direction] = _ratio(tunnel, direct)
        ratios[f"tcp_{direction}"] = _ratio(tcp, direct)
    rates = report.get("connections") or {}
    ratios["connections"] = _ratio(
        (rates.get("tcp") or {}).get("per_second"),
        (rates.get("portforward") or {}).get("per_second"),
    )
    return ratios


class TunnelBench:
    """The tunnel part: a destination, twisted-proxy and the clients."""

    def __init__(
        self,
        settings: TunnelSettings,
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

    def run(self) -> dict[str, Any]:
        """Every figure, direct and through a tunnel."""
        ensureFileLimit(self._s.idleTunnels * 2 + _SPARE_FILES)
        destination, port = self._startDestination()
        proxy, proxyPort, tcpPort = self._startProxy(port)
        report: dict[str, Any] = {
            "settings": {
                "transfer_bytes": self._s.transferBytes,
                "idle_tunnels": self._s.idleTunnels,
            },
            "throughput": {},
        }
        try:
            ways = (
                ("direct", port, None),
                ("tunnel", port, proxyPort),
                ("tcp", tcpPort, None),
            )
            for name, target, via in ways:
                rows = report["throughput"][name] = {}
                for direction in ("down", "up"):
                    size = self._s.transferBytes // MIB
                    self._log(f"tunnel: {name}, {direction} {size} MiB")
                    before = cpuSeconds(proxy.pid)
                    rows[direction] = self._stream(target, via, direction)
                    after = cpuSeconds(proxy.pid)
                    if name != "direct" and before is not None and after is not None:
                        gib = rows[direction]["bytes"] / GIB
                        rows[direction]["proxy_cpu_s_per_gib"] = (after - before) / gib
                    rows[direction]["mb_per_s"] = mbPerSecond(rows[direction])
            report["connections"] = {
                "tcp": self._connections(proxy, tcpPort, "tcp"),
                "portforward": self._portforward(port),
            }
            report["ratios"] = tunnelRatios(report)
            report["idle"] = self._idle(proxy, port, proxyPort)
        finally:
            self._children.stop(proxy)
            self._children.stop(destination)
        return report

    def _startDestination(self) -> tuple[Child, int]:
        portFile = self._workDir / "tunnel-destination.port"
        portFile.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "bench.tunnelpeers", "serve"]
        child = self._children.start(
            "tunnel-destination",
            [*argv, "--port-file", str(portFile)],
            cpu=self._loadCPU,
        )
        return child, waitForPortFile(child, portFile)

    def _startProxy(self, destinationPort: int) -> tuple[Child, int, int]:
        port, tcpPort = freePort(), freePort()
        config = self._workDir / "twisted-proxy-tunnel.toml"
        config.write_text(twistedProxyTunnelConfig(port, destinationPort, tcpPort))
        argv = [str(twistd()), "-n", "--pidfile=", "proxy", "--config", str(config)]
        child = self._children.start(
            "tunnel-twisted-proxy", argv, cpu=self._proxyCPU, cwd=self._workDir
        )
        waitForListener(child, port)
        waitForListener(child, tcpPort)
        return child, port, tcpPort

    def _connections(self, relay: Child, port: int, name: str) -> dict[str, Any]:
        """New connections per second through C{relay} on C{port}."""
        self._log(f"tunnel: new connections through {name}, {self._s.seconds:.0f} s")
        before = cpuSeconds(relay.pid)
        result = self._peer(
            f"tunnel-connections-{name}",
            ["connections", "--port", str(port), "--seconds", str(self._s.seconds)],
            timeout=self._s.seconds + 120,
        )
        after = cpuSeconds(relay.pid)
        count = int(result["connections"])
        result["per_second"] = count / float(result["seconds"])
        if before is not None and after is not None and count:
            result["relay_cpu_us_per_connection"] = (after - before) / count * 1e6
        return result

    def _portforward(self, destinationPort: int) -> dict[str, Any]:
        """The same through Twisted's byte relay, on the proxy's CPU."""
        port = freePort()
        child = self._children.start(
            "tunnel-portforward",
            portforwardCommand(str(twistd()), port, destinationPort),
            cpu=self._proxyCPU,
            cwd=self._workDir,
        )
        try:
            waitForListener(child, port)
            return self._connections(child, port, "portforward")
        finally:
            self._children.stop(child)

    def _peer(self, name: str, args: list[str], timeout: float) -> dict[str, Any]:
        code, output = self._children.run(
            name,
            [sys.executable, "-m", "bench.tunnelpeers", *args],
            cpu=self._loadCPU,
            timeout=timeout,
        )
        lines = [line for line in output.splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise ChildError(f"{name} failed ({code}): {output[-800:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def _stream(self, port: int, proxy: int | None, direction: str) -> dict[str, Any]:
        args = ["stream", "--port", str(port), "--direction", direction]
        args += ["--bytes", str(self._s.transferBytes)]
        if proxy is not None:
            args += ["--proxy", str(proxy)]
        return self._peer(f"tunnel-stream-{direction}", args, timeout=600)

    def _idle(self, proxy: Child, port: int, proxyPort: int) -> dict[str, Any]:
        """RSS per idle tunnel: one tunnel first (code loaded), then all of them."""
        count = self._s.idleTunnels
        self._peer(
            "tunnel-idle-one",
            ["stream", "--port", str(port), "--proxy", str(proxyPort), "--bytes", "1"],
            timeout=60,
        )
        _pause(1.0)
        before = statusKb(proxy.pid, "VmRSS")
        self._log(f"tunnel: {count} idle tunnels")
        argv = [sys.executable, "-m", "bench.tunnelpeers", "idle"]
        argv += ["--port", str(port), "--proxy", str(proxyPort), "--count", str(count)]
        if self._children.pinned:
            argv = ["taskset", "-c", str(self._loadCPU), *argv]
        holder = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_childEnv(),
        )
        try:
            assert holder.stdout is not None
            line = holder.stdout.readline()
            if not line.startswith("{"):
                raise ChildError(
                    f"the idle client failed: {line}{holder.stdout.read()}"
                )
            opened = json.loads(line)
            _pause(1.0)
            after = statusKb(proxy.pid, "VmRSS")
        finally:
            if holder.stdin is not None:
                holder.stdin.close()
            try:
                holder.wait(60)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait(10)
        return {
            "tunnels": opened["opened"],
            "open_seconds": opened["seconds"],
            "rss_before_kb": before,
            "rss_after_kb": after,
            "kib_per_tunnel": kibPerConnection(before, after, opened["opened"]),
        }


def _childEnv() -> dict[str, str]:
    import os

    from bench._procs import ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def summariseTunnel(report: dict[str, Any]) -> str:
    """The tunnel part as a few lines of text."""
    if "error" in report and "throughput" not in report:
        return f"Tunnels: failed: {report['error']}"
    lines = [
        "",
        "CONNECT tunnels and tcp listeners: one connection, direct and through"
        " twisted-proxy",
    ]
    rows = report.get("throughput") or {}
    size = (report.get("settings") or {}).get("transfer_bytes", 0) // MIB
    lines.append(f"  {size} MiB each way      MB/s down   MB/s up   proxy CPU-s/GiB")
    for name in ("direct", "tunnel", "tcp"):
        if name not in rows:
            continue
        row = rows.get(name) or {}
        down, up = row.get("down"), row.get("up")
        cpu = [(r or {}).get("proxy_cpu_s_per_gib") for r in (down, up)]
        cpuText = (
            "-" if cpu[0] is None else f"{cpu[0]:.2f} down, {_fmt(cpu[1], '.2f')} up"
        )
        lines.append(
            f"  {name:<20}{_fmt(mbPerSecond(down), '10,.0f')}"
            f"{_fmt(mbPerSecond(up), '10,.0f')}   {cpuText}"
        )
    ratios = report.get("ratios") or {}
    lines.append(
        f"  tunnel / direct: {_fmt(ratios.get('down'), '.2f', 'x')} down,"
        f" {_fmt(ratios.get('up'), '.2f', 'x')} up"
    )
    if "tcp" in rows:
        lines.append(
            f"  tcp listener / direct: {_fmt(ratios.get('tcp_down'), '.2f', 'x')}"
            f" down, {_fmt(ratios.get('tcp_up'), '.2f', 'x')} up"
        )
    rates = report.get("connections") or {}
    for name, label in (("tcp", "tcp listener"), ("portforward", "portforward")):
        row = rates.get(name)
        if row:
            lines.append(
                f"  new connections, {label:<13}{_fmt(row.get('per_second'), '8,.0f')}"
                f"/s, {_fmt(row.get('relay_cpu_us_per_connection'), '.0f')} us"
                " CPU each"
            )
    if rates:
        lines.append(
            "  new connections, tcp listener / portforward:"
            f" {_fmt(ratios.get('connections'), '.2f', 'x')}"
        )
    idle = report.get("idle") or {}
    if idle:
        lines.append(
            f"  {idle.get('tunnels')} idle tunnels: proxy RSS"
            f" {_fmt((idle.get('rss_before_kb') or 0) / 1024, '.1f')} MiB ->"
            f" {_fmt((idle.get('rss_after_kb') or 0) / 1024, '.1f')} MiB,"
            f" {_fmt(idle.get('kib_per_tunnel'), '.1f')} KiB per tunnel"
            f" (opened in {_fmt(idle.get('open_seconds'), '.1f')} s)"
        )
    return "\n".join(lines)
