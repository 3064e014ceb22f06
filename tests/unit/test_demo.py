"""
The decisions of the ``make run`` demo (twisted_proxy/demo.py): which ports,
what it says when one cannot be had, the configuration it writes for other
ports, and its exit status; no sockets.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq

from twisted_proxy.config import loadString
from twisted_proxy.demo import (
    DEFAULT_PORTS,
    DemoError,
    NamedBackend,
    cannotListen,
    exitStatus,
    killedMessage,
    otherPorts,
    parsePorts,
    proxyConfig,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "etc" / "twisted-proxy.toml"


def test_noPortsMeansTheDefaults() -> None:
    """No ports named: the two that etc/twisted-proxy.toml balances."""
    assert parsePorts([]) == DEFAULT_PORTS == (9001, 9002)


def test_portsKeepTheirOrder() -> None:
    """Named ports come back in order, 0 (any free port) as often as given."""
    assert parsePorts(["9102", "9101", "0", "0"]) == (9102, 9101, 0, 0)


@pytest.mark.parametrize("word", ["http", "", "-1", "65536", "9001.5", "٩٠٠١"])
def test_notAPortIsOneLine(word: str) -> None:
    """A word that is not a port number is refused in one line saying how."""
    with pytest.raises(DemoError) as raised:
        parsePorts(["9101", word])
    message = str(raised.value)
    assert "\n" not in message
    assert repr(word) in message
    assert 'make run DEMO_PORTS="9101 9102"' in message


def test_portNamedTwice() -> None:
    """The same port twice cannot be two backends."""
    with pytest.raises(DemoError, match="port 9101 is named twice"):
        parsePorts(["9101", "9101"])


def test_otherPortsAreAHundredOn() -> None:
    """The suggestion moves each port 100 on, or back near the top."""
    assert otherPorts((9001, 9002)) == (9101, 9102)
    assert otherPorts((65500, 80)) == (65400, 180)


def test_cannotListenNamesThePortAndDemoPorts() -> None:
    """The error is one line naming the port, the reason and DEMO_PORTS."""
    message = cannotListen([(9002, "Address already in use")], (9001, 9002))
    assert message == (
        "demo: cannot listen on 127.0.0.1:9002 (Address already in use); "
        'choose other ports with: make run DEMO_PORTS="9101 9102"'
    )


def test_cannotListenNamesEveryPort() -> None:
    """Every port that could not be had is named, on the same line."""
    message = cannotListen(
        [(9001, "Address already in use"), (9002, "Permission denied")],
        (9001, 9002),
    )
    assert "\n" not in message
    assert "127.0.0.1:9001 (Address already in use)" in message
    assert "127.0.0.1:9002 (Permission denied)" in message


def test_configForTheDefaultPortsIsTheTemplate() -> None:
    """Written for 9001 and 9002, the configuration is the shipped one."""
    template = TEMPLATE.read_text("utf-8")
    written = proxyConfig(template, DEFAULT_PORTS, "etc/twisted-proxy.toml")
    assert loadString(written) == loadString(template)


def test_configForOtherPorts() -> None:
    """Other ports: one member per port, in order; the rest as shipped."""
    template = TEMPLATE.read_text("utf-8")
    written = proxyConfig(template, (9101, 9102, 9103), "etc/twisted-proxy.toml")
    assert written.startswith(
        '# Written by `make run DEMO_PORTS="9101 9102 9103"` from '
        "etc/twisted-proxy.toml"
    )
    config, shipped = loadString(written), loadString(template)
    members = config.balancer("demo").members
    assert [(m.url, m.route) for m in members] == [
        ("http://127.0.0.1:9101", "1"),
        ("http://127.0.0.1:9102", "2"),
        ("http://127.0.0.1:9103", "3"),
    ]
    assert (config.proxy, config.listen, config.routes) == (
        shipped.proxy,
        shipped.listen,
        shipped.routes,
    )


def test_configWithoutMembers() -> None:
    """A template without the demo's member table is refused by name."""
    with pytest.raises(DemoError, match=r"site.toml has no \[\[balancer.demo"):
        proxyConfig("[proxy]\n", (9101,), "site.toml")


@pytest.mark.parametrize(
    ("exitCode", "signalNumber", "status"),
    [
        (0, None, 0),
        (1, None, 1),
        (None, signal.SIGINT, 0),
        (None, signal.SIGTERM, 0),
        (None, signal.SIGKILL, 128 + signal.SIGKILL),
    ],
)
def test_exitStatus(
    exitCode: int | None, signalNumber: int | None, status: int
) -> None:
    """The demo fails as the proxy failed, and succeeds when it was stopped."""
    assert exitStatus(exitCode, signalNumber) == status


def test_killedProxyIsSaid() -> None:
    """A proxy killed by a signal cannot say so: the demo does, in one line."""
    assert killedMessage(signal.SIGKILL) == (
        "demo: the proxy was killed by SIGKILL; the backends are stopped"
    )
    assert killedMessage(None) is None
    assert killedMessage(signal.SIGINT) is None
    assert killedMessage(signal.SIGTERM) is None


@pytest_twisted.ensureDeferred
async def test_backendAnswersWithItsName() -> None:
    """A demo backend answers any path with its name, in the body and X-Backend."""
    treq: Any = StubTreq(NamedBackend("backend 2"))
    response = await treq.get("http://127.0.0.1:9002/any/path")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"x-backend") == [b"backend 2"]
    assert await response.content() == b"backend 2\n"
