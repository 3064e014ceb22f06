"""
The installed program on whatever versions the venv has: ``make test-oldest``
runs this module in a venv holding exactly the dependency floors of
tests/oldest-constraints.txt and a non-editable install of the project; the
normal suite runs it on the newest. One start-up of the real ``twistd -n
proxy`` with a TLS listener and one HTTPS request through it to a backend; and
a check that the constraints file pins the floors pyproject.toml declares.
"""

from __future__ import annotations

import re
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.integration.processes import BOUND, Child, freePort, startTwistd
from tests.integration.support import RecordingBackend, Stack
from tests.tlsfiles import TestCA

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "tests" / "oldest-constraints.txt"


def _get(port: int, ca: Path, path: str, curve: str | None = None) -> bytes:
    """One HTTPS GET with Python's ssl; the status line and body."""
    context = ssl.create_default_context(cafile=str(ca))
    if curve is not None:
        # OpenSSL 3 takes this as the client's whole group list.
        context.set_ecdh_curve(curve)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=BOUND) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        tls.sendall(request.encode() + b"\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0] + b"\n" + body


@pytest_twisted.ensureDeferred
async def test_installedTwistdServesHTTPS(
    stack: Stack, children: list[tuple[Child, Any]], tmp_path: Path
) -> None:
    """The installed ``twistd -n proxy`` starts a TLS listener and children HTTPS."""
    backend = RecordingBackend()
    backendPort = await stack.backend(backend)
    ca = TestCA(tmp_path)
    ca.issue("localhost", "127.0.0.1", stem="proxy")
    port = freePort()
    config = tmp_path / "site.toml"
    config.write_text(
        f"""
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:{port}:interface=127.0.0.1"
[listen.tls]
certificate = "proxy.pem"
key = "proxy.key"
[[route]]
path = "/"
to = "http://127.0.0.1:{backendPort}/"
"""
    )
    child, transport = await startTwistd(stack, children, config, port)
    answer = await threads.deferToThread(_get, port, ca.certificate, "/oldest?x=1")
    assert answer == b"HTTP/1.1 200 OK\nbackend saw GET /oldest?x=1", child.output
    assert backend.requests[0].header(b"x-forwarded-proto") == b"https"
    # The key-exchange groups are limited (P-521 is not in the profile), not
    # left at OpenSSL's defaults.
    with pytest.raises(ssl.SSLError):
        await threads.deferToThread(_get, port, ca.certificate, "/", "secp521r1")
    transport.signalProcess("TERM")
    await child.whenEnded().addTimeout(BOUND, stack.reactor)
    assert b"Traceback" not in child.output, child.output
    assert b"default key-exchange groups" not in child.output, child.output


def _floors() -> dict[str, str]:
    """Each runtime dependency's name and lowest allowed version, from pyproject."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in project["dependencies"]:
        match = re.match(
            r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*>=\s*([0-9.]+)", requirement
        )
        assert match, f"no >= floor in {requirement!r}"
        floors[match[1].lower()] = match[2]
    return floors


def _pins() -> dict[str, str]:
    """Each name and version pinned in tests/oldest-constraints.txt."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_constraintsPinEveryFloor() -> None:
    """tests/oldest-constraints.txt pins each runtime dependency at its floor."""
    floors, pins = _floors(), _pins()
    assert sorted(pins) == sorted(floors)
    for name, floor in floors.items():
        wanted = floor.split(".")
        assert pins[name].split(".")[: len(wanted)] == wanted, (name, pins[name])
