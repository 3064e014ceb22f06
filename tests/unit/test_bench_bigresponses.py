"""
The big-responses part of the benchmark: the static backend's configuration,
the body it serves, and the ratios it reports.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.bigresponses import SIZE, ratios, staticConfig, summarise, writeBody


def test_theBackendServesOnLoopbackOnly(tmp_path: Path) -> None:
    """The static nginx listens on 127.0.0.1 and names no other address."""
    text = staticConfig(tmp_path, 8001, tmp_path / "static")
    assert set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)) == {"127.0.0.1"}
    assert "listen 127.0.0.1:8001;" in text
    assert "master_process off;" in text


def test_theBodyIsTenMiBAndNotOneByteRepeated(tmp_path: Path) -> None:
    """The body is exactly 10 MiB and varies (nothing may shrink it)."""
    path = writeBody(tmp_path / "static")
    data = path.read_bytes()
    assert len(data) == SIZE
    assert len(set(data[:4096])) == 256
    assert data[:65536] != data[1 << 20 : (1 << 20) + 65536]


def test_ratiosAndVerdict() -> None:
    """twisted-proxy's MiB/s over each other row's, and the target's verdict."""
    rows = {
        "twisted-proxy": {"mib_per_s": 900.0, "cpu_s_per_gib": 1.1},
        "haproxy": {"mib_per_s": 1000.0},
        "nginx": {"error": "did not start"},
    }
    assert ratios(rows, "twisted-proxy") == {"haproxy": 0.9}
    lines = summarise(
        {"rows": rows, "ratios": ratios(rows, "twisted-proxy")},
        "twisted-proxy",
        "haproxy",
    )
    assert "  MiB/s target >= haproxy's: FAIL" in lines
    assert any(line.startswith("  nginx") and "failed" in line for line in lines)
