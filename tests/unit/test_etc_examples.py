"""
Every shipped example under etc/ passes C{twisted-proxy check}.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tlsfiles import TestCA
from twisted_proxy.cli import main

ETC = Path(__file__).resolve().parents[2] / "etc"
EXAMPLES = sorted([*ETC.glob("*.toml"), *ETC.glob("apache-*.conf")])


def test_examplesShipped() -> None:
    """The demo config and the scenario examples are all present."""
    names = {path.name for path in EXAMPLES}
    assert {
        "twisted-proxy.toml",
        "scenario-1-basic.toml",
        "scenario-2-cluster.toml",
        "scenario-3-microservices.toml",
        "scenario-4-tls.toml",
        "scenario-5-websockets.toml",
        "scenario-6-hardening.toml",
        "scenario-7-tuning.toml",
        "scenario-8-backend-down.toml",
        "scenario-9-sticky.toml",
        "apache-cluster.conf",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_exampleChecks(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    twisted-proxy check accepts the example file (beside the certificate
    files it names, for a TLS example: those are the operator's own).
    """
    if "tls/proxy.pem" in path.read_text():
        (tmp_path / "tls").mkdir()
        TestCA(tmp_path / "tls").issue("localhost", "127.0.0.1", stem="proxy")
        path = Path(shutil.copy(path, tmp_path))
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
