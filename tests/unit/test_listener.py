"""
Tests for L{twisted_proxy.frontends.listener}: the registry of a listener's
live connections that graceful shutdown drains and the grace period's end
cuts, whatever protocol each connection speaks.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_proxy.config.model import ProxySettings
from twisted_proxy.frontends.http1 import HTTPProxyFactory, HTTPServerChannel
from twisted_proxy.frontends.http2 import H2ProxyConnection
from twisted_proxy.frontends.listener import (
    IListenerConnection,
    ListenerConnections,
    ListenerSite,
    SendTimeout,
)


@implementer(IListenerConnection)
class Connection:
    """A connection of any protocol: drained and cut as it is asked."""

    protocolName = "http/1.1"

    def __init__(self, registry: ListenerConnections, busy: bool = False) -> None:
        self.registry = registry
        self.busy = busy
        self.draining = False
        self.cut: list[str] = []
        self.aborted = False
        registry.add(self)

    def drain(self) -> None:
        self.draining = True
        if not self.busy:
            self.close()

    def close(self) -> None:
        self.registry.remove(self)

    def cutShort(self, reason: str) -> None:
        self.cut.append(reason)

    def abortConnection(self) -> None:
        self.aborted = True
        self.close()


def test_drainClosesIdleAndWaitsForBusy() -> None:
    """drain() asks every connection; it fires once the last busy one is gone."""
    registry = ListenerConnections()
    idle = Connection(registry)
    busy = Connection(registry, busy=True)
    drained = registry.drain()
    fired: list[object] = []
    drained.addCallback(fired.append)
    assert idle.draining
    assert busy.draining
    assert list(registry) == [busy]
    assert fired == []
    busy.close()
    assert fired == [None]
    assert len(registry) == 0


def test_drainOfNothingFiresAtOnce() -> None:
    """A listener with no connection is drained at once; so are two drains."""
    registry = ListenerConnections()
    assert registry.drain().called
    busy = Connection(registry, busy=True)
    first, second = registry.drain(), registry.drain()
    busy.close()
    assert first.called
    assert second.called


def test_retireDrainsHTTPAndLeavesWebSocketsAndTunnels() -> None:
    """
    A listener a reload retired: its HTTP/1.1 and HTTP/2 connections are
    drained, its WebSockets and tunnels are left to end by themselves, and
    retire() fires once the last of them is gone.
    """
    registry = ListenerConnections()
    http1, http2 = Connection(registry, busy=True), Connection(registry, busy=True)
    http2.protocolName = "h2"
    websocket, tunnel = Connection(registry), Connection(registry)
    websocket.protocolName, tunnel.protocolName = "websocket", "tunnel"
    retired = registry.retire()
    assert (http1.draining, http2.draining) == (True, True)
    assert (websocket.draining, tunnel.draining) == (False, False)
    http1.close()
    http2.close()
    websocket.close()
    assert not retired.called
    tunnel.close()
    assert retired.called
    assert registry.retire().called


def test_abortAllSaysWhyThenCuts() -> None:
    """abortAll(reason) tells each connection why, then cuts it."""
    registry = ListenerConnections()
    connections = [Connection(registry, busy=True) for _ in range(2)]
    registry.abortAll("shutdown-grace")
    assert [c.cut for c in connections] == [["shutdown-grace"]] * 2
    assert all(c.aborted for c in connections)
    assert len(registry) == 0


def test_http1ChannelsRegisterAndDrain() -> None:
    """
    The HTTP/1.1 factory's channels are in its registry (and its channels
    set) from the start; an idle one closes when the site drains.
    """
    site = HTTPProxyFactory(Resource(), ProxySettings(), Clock())
    assert isinstance(site, ListenerSite)
    channel = site.buildProtocol(None)
    assert isinstance(channel, HTTPServerChannel)
    assert verifyObject(IListenerConnection, channel)
    assert site.channels == {channel}
    assert list(site.connections) == [channel]
    transport = StringTransport()
    channel.makeConnection(transport)
    drained = site.drain()
    assert transport.disconnecting
    assert not drained.called
    channel.connectionLost(None)
    assert drained.called
    assert site.channels == set()


def test_http2ConnectionsAreListenerConnections() -> None:
    """An HTTP/2 connection drains and is cut as the registry asks."""
    site = HTTPProxyFactory(Resource(), ProxySettings(), Clock())
    assert verifyObject(IListenerConnection, H2ProxyConnection(site))


def test_servedNamesAreReducedAsRoutingReducesAHost() -> None:
    """server_name and route hosts lose a trailing dot, brackets and case."""
    site = ListenerSite(
        Resource(),
        ProxySettings(server_name="Proxy.Example.Test."),
        Clock(),
        hostNames=["[::1]", "*.apps.test"],
    )
    assert site.hostNames == {"proxy.example.test", "localhost", "::1", "*.apps.test"}


def test_sendTimeoutLetsGoOfAClientThatTakesNothing() -> None:
    """send_timeout runs from the first pause; a cancel (room again) stops it."""
    clock = Clock()
    expired: list[None] = []
    timeout = SendTimeout(clock, 5.0, lambda: expired.append(None))
    timeout.start(StringTransport())
    clock.advance(3)
    timeout.start(StringTransport())  # paused again: still the first clock
    clock.advance(2)
    assert expired == [None]
    timeout.start(StringTransport())
    clock.advance(4)
    timeout.cancel()
    clock.advance(10)
    assert expired == [None]
    assert clock.getDelayedCalls() == []


def test_sendTimeoutClosedStopsForGood() -> None:
    """Closed with its connection: stopped, not started again, owner let go."""
    clock = Clock()
    expired: list[None] = []

    def expire() -> None:
        expired.append(None)

    timeout = SendTimeout(clock, 5.0, expire)
    timeout.start(StringTransport())
    timeout.close()
    timeout.start(StringTransport())
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert expired == []
    assert expire not in vars(timeout).values()
