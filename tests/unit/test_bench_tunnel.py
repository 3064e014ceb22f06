"""
Tests for the tunnel benchmark's pure parts: the configuration it writes, its
arguments, the figures it works out and its summary.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import _parseArgs
from bench.tunnel import (
    mbPerSecond,
    summariseTunnel,
    tunnelRatios,
    twistedProxyTunnelConfig,
)
from twisted_proxy.config import loadString


def test_configTunnelsToTheDestinationOnly() -> None:
    """CONNECT to the destination only, and a tcp listener relaying to it."""
    config = loadString(twistedProxyTunnelConfig(8080, 9000, 8081))
    [listener, stream] = config.listen
    assert listener.endpoint == "tcp:8080:interface=127.0.0.1"
    assert listener.connect is not None
    assert listener.connect.allow_ports == (9000,)
    assert [str(d) for d in listener.connect.allow_destinations] == ["127.0.0.1/32"]
    assert (stream.endpoint, stream.protocol) == ("tcp:8081:interface=127.0.0.1", "tcp")
    assert stream.to is not None
    assert stream.to.url == "tcp://127.0.0.1:9000"
    assert config.routes == ()


def test_figures() -> None:
    """MB/s of each row and the tunnel / direct ratios."""
    report: dict[str, Any] = {
        "throughput": {
            "direct": {
                "down": {"bytes": 2_000_000_000, "seconds": 1.0},
                "up": {"bytes": 1_000_000_000, "seconds": 1.0},
            },
            "tunnel": {
                "down": {"bytes": 2_000_000_000, "seconds": 4.0},
                "up": {"bytes": 1_000_000_000, "seconds": 0.0},
            },
        }
    }
    assert mbPerSecond(report["throughput"]["direct"]["down"]) == 2000.0
    assert mbPerSecond(None) is None
    ratios = tunnelRatios(report)
    assert (ratios["down"], ratios["up"], ratios["tcp_down"]) == (0.25, None, None)
    report["connections"] = {
        "tcp": {"per_second": 1500.0},
        "portforward": {"per_second": 3000.0},
    }
    assert tunnelRatios(report)["connections"] == 0.5


def test_summary() -> None:
    report = {
        "settings": {"transfer_bytes": 1 << 30, "idle_tunnels": 10},
        "throughput": {
            "direct": {"down": {"bytes": 1 << 30, "seconds": 0.5}},
            "tunnel": {
                "down": {"bytes": 1 << 30, "seconds": 1.0, "proxy_cpu_s_per_gib": 1.2}
            },
        },
        "ratios": {"down": 0.5, "up": None},
        "idle": {
            "tunnels": 10,
            "open_seconds": 0.1,
            "rss_before_kb": 1024,
            "rss_after_kb": 1104,
            "kib_per_tunnel": 8.0,
        },
    }
    text = summariseTunnel(report)
    assert "1024 MiB each way" in text
    assert "tunnel / direct: 0.50x down, - up" in text
    assert "1.20 down" in text
    assert "10 idle tunnels: proxy RSS 1.0 MiB -> 1.1 MiB, 8.0 KiB per tunnel" in text
    assert summariseTunnel({"error": "boom"}) == "Tunnels: failed: boom"


def test_arguments() -> None:
    """--tunnel-only, --no-tunnel and --tunnel-idle; --quick opens fewer."""
    assert _parseArgs([]).tunnel
    assert _parseArgs([]).tunnelIdle == 5000
    assert _parseArgs(["--quick"]).tunnelIdle == 2000
    assert not _parseArgs(["--no-tunnel"]).tunnel
    only = _parseArgs(["--tunnel-only", "--tunnel-idle", "300"])
    assert (only.tunnelOnly, only.tunnelIdle) == (True, 300)
    with pytest.raises(SystemExit):
        _parseArgs(["--tunnel-only", "--ws-only"])
