"""
The configurations the benchmark writes for its peer proxies: each one a
single process on 127.0.0.1 in front of the benchmark's backend, with an
upstream keep-alive pool. (make bench runs the programs themselves.)
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.peers import apacheConfig, haproxyConfig, nginxConfig


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
