"""
The admin surface's view of a running proxy: the effective config, open
connections by protocol, and reload; it sees the balancer through the context.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from tests.tlsfiles import TestCA
from twisted_proxy.admin import AdminContext
from twisted_proxy.config import loadString
from twisted_proxy.service import ProxyService

SITE = """
[proxy]
access_log = false
[[listen]]
endpoint = "tcp:8080:interface=127.0.0.1"
[[route]]
path = "/"
to = "balancer://web/"
[balancer.web]
[[balancer.web.member]]
url = "http://127.0.0.1:9001"
"""


def test_viewOfARunningProxy() -> None:
    """The view shows the config and counts an HTTP/1.1 client while it is open."""
    config = loadString(SITE)
    service = ProxyService(config, MemoryReactorClock())
    admin = service.admin
    assert isinstance(admin, AdminContext)
    assert admin.view.effectiveConfig() is config
    assert admin.balancer is service.balancer
    assert [m.name for m in admin.balancer.members("web")] == ["http://127.0.0.1:9001"]
    none = {"http/1.1": 0, "h2": 0, "websocket": 0, "tunnel": 0}
    assert admin.view.openConnections() == none
    channel = service.site.buildProtocol(None)
    channel.makeConnection(StringTransport())
    assert admin.view.openConnections() == {**none, "http/1.1": 1}
    assert admin.view.busyConnections() == 0
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert admin.view.busyConnections() == 1
    channel.connectionLost(None)
    assert admin.view.openConnections() == none
    assert admin.view.busyConnections() == 0


@pytest.mark.parametrize("broken", [False, True])
def test_reloadIsTheCertificateReload(tmp_path: Path, broken: bool) -> None:
    """reload() reloads the certificates: True when taken, False when broken."""
    ca = TestCA(tmp_path)
    issued = ca.issue("localhost", stem="proxy")
    text = SITE.replace(
        'endpoint = "tcp:8080:interface=127.0.0.1"',
        'endpoint = "tcp:8443:interface=127.0.0.1"\n[listen.tls]\n'
        f'certificate = "{issued.certificate}"\nkey = "{issued.key}"',
    )
    service = ProxyService(loadString(text), MemoryReactorClock())
    if broken:
        Path(issued.key).write_text("not a key\n")
    assert service.admin.view.reload() is (not broken)
