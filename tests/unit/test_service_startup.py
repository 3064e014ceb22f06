"""
ProxyService's start-up as a library sees it: endpoint strings are parsed at
construction, ports bound in privilegedStartService (before twistd drops
root), and what cannot start is a StartupError naming the key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_proxy.config import Config, loadString
from twisted_proxy.preflight import StartupError
from twisted_proxy.service import ProxyService

SITE = """
[proxy]
access_log = {log}
[[listen]]
endpoint = "{endpoint}"
[[route]]
path = "/"
to = "http://127.0.0.1:9001/"
"""


def config(
    endpoint: str = "tcp:8080:interface=127.0.0.1", log: str = "false"
) -> Config:
    """A one-route site listening on C{endpoint}, logging to C{log}."""
    return loadString(SITE.format(endpoint=endpoint, log=log))


def test_badEndpointAtConstruction() -> None:
    """An endpoint string Twisted cannot parse fails at once, naming the key."""
    with pytest.raises(StartupError, match=r"^listen\[0\]\.endpoint: 'tcp:nope'"):
        ProxyService(config("tcp:nope"), MemoryReactorClock())


def test_boundInPrivilegedStart() -> None:
    """privilegedStartService binds; startService does not bind again."""
    reactor = MemoryReactorClock()
    service = ProxyService(config(), reactor)
    service.privilegedStartService()
    assert [(p[0], p[3]) for p in reactor.tcpServers] == [(8080, "127.0.0.1")]
    service.startService()
    assert len(reactor.tcpServers) == 1
    assert service.running
    service.stopService()
    assert not service.running


def test_startServiceAloneBinds() -> None:
    """A program that only calls startService still gets its ports."""
    reactor = MemoryReactorClock()
    service = ProxyService(config(), reactor)
    service.startService()
    assert len(reactor.tcpServers) == 1
    service.stopService()


def test_accessLogFolderMissing(tmp_path: Path) -> None:
    """An access log that cannot be opened stops start-up with its key; no port."""
    reactor = MemoryReactorClock()
    log = tmp_path / "missing" / "access.log"
    service = ProxyService(config(log=f'"{log}"'), reactor)
    with pytest.raises(StartupError, match=r"^proxy\.access_log: the folder "):
        service.privilegedStartService()
    assert reactor.tcpServers == []


_AUTOBAHN_PROBE = """
import sys
from twisted.internet.testing import MemoryReactorClock
from twisted_proxy.config import loadString
from twisted_proxy.service import ProxyService
ProxyService(loadString(sys.stdin.read()), MemoryReactorClock())
print("autobahn" in sys.modules)
"""


def test_autobahnLoadedByTheFirstHandshakeOnly() -> None:
    """
    A proxy is built without Autobahn in memory (the WebSocket front end
    comes with the first handshake), even with a WebSocket route.
    """
    source = SITE.format(endpoint="tcp:0:interface=127.0.0.1", log="false")
    source += "websocket = true\n"
    result = subprocess.run(
        [sys.executable, "-c", _AUTOBAHN_PROBE],
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["False"]
