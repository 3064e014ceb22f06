"""
Proof of the TLS defaults: sslyze (Mozilla's compliance checker) run against
a listener with nothing but a certificate and key configured.

sslyze is installed by C{make test} into C{.venv-sslyze} (it pins an older
cryptography than pyOpenSSL accepts); C{SSLYZE} names another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from tests.integration.support import Stack, tlsListener

ROOT = Path(__file__).resolve().parents[2]
SSLYZE = os.environ.get("SSLYZE", str(ROOT / ".venv-sslyze" / "bin" / "sslyze"))


async def sslyze(port: int, ca: Path) -> tuple[str, int]:
    """Run sslyze's Mozilla "intermediate" check on 127.0.0.1:C{port}."""
    assert os.path.exists(SSLYZE), f"{SSLYZE} is missing: `make test` installs it"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out, err, code = await getProcessOutputAndValue(
        SSLYZE,
        (
            "--quiet",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
            str(ca),
            f"127.0.0.1:{port}",
        ),
        env=env,
    )
    return out.decode() + err.decode(), code


@pytest_twisted.ensureDeferred
async def test_defaultsAreMozillaIntermediate(stack: Stack, tmp_path: Path) -> None:
    """sslyze finds a default TLS listener compliant with Mozilla intermediate."""
    port, ca = await tlsListener(stack, tmp_path)
    output, code = await sslyze(port, ca)
    assert f"127.0.0.1:{port}: OK - Compliant." in output, output
    assert code == 0, output


@pytest_twisted.ensureDeferred
async def test_sslyzeCatchesAWeakConfiguration(stack: Stack, tmp_path: Path) -> None:
    """The same check fails a listener told to offer CBC suites (it can fail)."""
    port, ca = await tlsListener(
        stack,
        tmp_path,
        'ciphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256"',
    )
    output, code = await sslyze(port, ca)
    assert f"127.0.0.1:{port}: FAILED - Not compliant." in output, output
    assert "ECDHE-ECDSA-AES128-SHA" in output or "TLS_ECDHE_ECDSA" in output, output
    assert code == 1
