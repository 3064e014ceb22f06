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
from twisted_proxy.config import load, loadString
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
    none = {"http/1.1": 0, "h2": 0, "websocket": 0, "tunnel": 0, "tcp": 0}
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
def test_reloadReadsTheFileAgain(tmp_path: Path, broken: bool) -> None:
    """
    reload() re-reads the file: a second member is taken (generation 2);
    a key file gone bad refuses the whole file, naming it, and keeps
    generation 1 with its one member.
    """
    ca = TestCA(tmp_path)
    issued = ca.issue("localhost", stem="proxy")
    text = SITE.replace(
        'endpoint = "tcp:8080:interface=127.0.0.1"',
        'endpoint = "tcp:8443:interface=127.0.0.1"\n[listen.tls]\n'
        f'certificate = "{issued.certificate}"\nkey = "{issued.key}"',
    )
    site = tmp_path / "site.toml"
    site.write_text(text)
    service = ProxyService(load(str(site)), MemoryReactorClock())
    site.write_text(text + '[[balancer.web.member]]\nurl = "http://127.0.0.1:9002"\n')
    if broken:
        Path(issued.key).write_text("not a key\n")
    result = service.admin.view.reload()
    assert result.ok is (not broken)
    members = [m.name for m in service.balancer.members("web")]
    if broken:
        assert result.generation == 1
        assert any(str(issued.key) in error for error in result.errors)
        assert members == ["http://127.0.0.1:9001"]
        assert service.admin.view.reloads() == {"taken": 0, "refused": 1}
    else:
        assert (result.generation, result.errors) == (2, ())
        assert members == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
        assert service.admin.view.reloads() == {"taken": 1, "refused": 0}
