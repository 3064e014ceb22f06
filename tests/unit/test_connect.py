"""
CONNECT without sockets: the gate (C{twisted_proxy.frontends.connect}) on a
memory reactor with a resolver the test answers, and the tunnel
(C{twisted_proxy.frontends.tunnel}) between two StringTransports.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IHalfCloseableDescriptor
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import directlyProvides

from twisted_proxy.config import loadString
from twisted_proxy.frontends.connect import ConnectGate
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.tunnel import CONNECTED, Tunnel

CONFIG = """
[proxy]
access_log = false
connect_timeout = 2
[[listen]]
endpoint = "tcp:3128:interface=127.0.0.1"
[listen.connect]
allow_ports = [443]
allow_destinations = ["192.0.2.0/24", "2001:db8::/32", "db.internal"]
idle_timeout = 10
"""


class Resolver:
    """A name resolver the test answers by hand."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, str, int]] = []

    def resolveHostName(
        self, receiver: Any, hostName: str, portNumber: int = 0, *a: Any, **k: Any
    ) -> Any:
        self.asked.append((receiver, hostName, portNumber))
        receiver.resolutionBegan(None)
        return receiver

    def answer(self, *addresses: Any) -> None:
        receiver, _, _ = self.asked.pop(0)
        for address in addresses:
            receiver.addressResolved(address)
        receiver.resolutionComplete()


class Logged:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.refusals: list[Any] = []
        self.users: list[str | None] = []

    def logRequest(self, request: Any) -> None:
        self.users.append(getattr(request, "remoteUser", None))
        self.requests.append(
            (request.method, request.uri, request.code, request.sentLength)
        )

    def logRefusal(self, *args: Any) -> None:
        self.refusals.append(args)


class Proxy:
    """A listener with [listen.connect] and one client connection to it."""

    def __init__(self, text: str = CONFIG) -> None:
        self.reactor = MemoryReactorClock()
        self.resolver = Resolver()
        self.reactor.nameResolver = self.resolver  # type: ignore[assignment]
        config = loadString(text)
        listener = config.listen[0]
        assert listener.connect is not None
        self.log = Logged()
        self.factory = HTTPProxyFactory(
            None,  # type: ignore[arg-type]
            config.proxy,
            self.reactor,
            accessLog=self.log,
            listener=listener,
        )
        self.factory.connectGate = ConnectGate(
            listener.connect, config.proxy, self.reactor
        )
        self.channel = self.factory.buildProtocol(None)
        self.client = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        self.channel.makeConnection(self.client)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def connecting(self) -> list[tuple[str, int, Any]]:
        return [(h, p, f) for h, p, f, _, _ in self.reactor.tcpClients]

    def accept(self, index: int = -1) -> tuple[Any, StringTransport]:
        """The destination accepts connection attempt C{index}."""
        _, _, factory, _, _ = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        directlyProvides(transport, IHalfCloseableDescriptor)
        transport.loseWriteConnection = lambda: setattr(  # type: ignore[attr-defined]
            transport, "halfClosed", True
        )
        protocol.makeConnection(transport)
        return protocol, transport

    def fail(self, reason: Exception, index: int = -1) -> None:
        _, _, factory, _, _ = self.reactor.tcpClients[index]
        connector = self.reactor.connectors[index]
        factory.clientConnectionFailed(connector, Failure(reason))


def connect(target: bytes) -> bytes:
    return b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)


def test_anAddressIsConnectedToWithoutResolving() -> None:
    """An allowed address: connected to at once; 200 once it accepts."""
    proxy = Proxy()
    proxy.send(connect(b"192.0.2.7:443") + b"early")
    assert proxy.resolver.asked == []
    assert [(h, p) for h, p, _ in proxy.connecting()] == [("192.0.2.7", 443)]
    _, server = proxy.accept()
    assert proxy.client.value() == CONNECTED
    assert server.value() == b"early"


def test_aNameIsResolvedOnceAndOnlyAllowedAddressesTried() -> None:
    """Each address judged: the refused ones are never connected to."""
    proxy = Proxy()
    proxy.send(connect(b"www.example.test:443"))
    assert [h for _, h, _ in proxy.resolver.asked] == ["www.example.test"]
    proxy.resolver.answer(
        IPv4Address("TCP", "127.0.0.1", 443),
        IPv4Address("TCP", "192.0.2.9", 443),
        IPv6Address("TCP", "2001:db8::5", 443),
    )
    assert [h for h, _, _ in proxy.connecting()] == ["192.0.2.9"]
    proxy.fail(ConnectionRefusedError())
    assert [h for h, _, _ in proxy.connecting()] == ["192.0.2.9", "2001:db8::5"]
    proxy.accept()
    assert proxy.client.value() == CONNECTED
    assert proxy.resolver.asked == []


def test_aNameWithOnlyRefusedAddressesIs403() -> None:
    """Rebinding to loopback: 403, nothing connected, the connection closed."""
    proxy = Proxy()
    proxy.send(connect(b"rebound.example.test:443"))
    proxy.resolver.answer(IPv4Address("TCP", "127.0.0.1", 443))
    assert proxy.connecting() == []
    assert proxy.client.value().startswith(b"HTTP/1.1 403 ")
    assert b"127.0.0.1" in proxy.client.value()
    assert proxy.client.disconnecting


def test_aListedNameReachesItsPrivateAddress() -> None:
    """The operator vouched for db.internal: its loopback address is connected to."""
    proxy = Proxy()
    proxy.send(connect(b"db.internal:443"))
    proxy.resolver.answer(IPv4Address("TCP", "127.0.0.2", 443))
    assert [h for h, _, _ in proxy.connecting()] == ["127.0.0.2"]


def test_unresolvableIs502() -> None:
    proxy = Proxy()
    proxy.send(connect(b"nowhere.example.test:443"))
    proxy.resolver.answer()
    assert proxy.client.value().startswith(b"HTTP/1.1 502 ")
    assert b"cannot resolve nowhere.example.test" in proxy.client.value()


def test_slowResolutionIs504AndItsLateAnswerIgnored() -> None:
    """Resolving outlasts connect_timeout: 504; the late answer is not used."""
    proxy = Proxy()
    proxy.send(connect(b"slow.example.test:443"))
    proxy.reactor.advance(2)
    assert proxy.client.value().startswith(b"HTTP/1.1 504 ")
    proxy.resolver.answer(IPv4Address("TCP", "192.0.2.1", 443))
    assert proxy.connecting() == []
    assert proxy.reactor.getDelayedCalls() == []


def test_connectTimeoutIs504RefusedIs502() -> None:
    proxy = Proxy()
    proxy.send(connect(b"192.0.2.7:443"))
    assert proxy.connecting()[0][0] == "192.0.2.7"
    assert proxy.reactor.tcpClients[0][3] == 2  # connect_timeout
    proxy.fail(TimeoutError())
    assert proxy.client.value().startswith(b"HTTP/1.1 504 ")
    proxy = Proxy()
    proxy.send(connect(b"192.0.2.7:443"))
    proxy.fail(ConnectionRefusedError())
    assert proxy.client.value().startswith(b"HTTP/1.1 502 ")
    assert b"connection refused" in proxy.client.value()


def test_aClientThatLeavesStopsTheAttempt() -> None:
    """Gone while connecting: the attempt is cancelled, nothing opened."""
    proxy = Proxy()
    proxy.send(connect(b"192.0.2.7:443"))
    connector = proxy.reactor.connectors[0]
    proxy.channel.connectionLost(Failure(ConnectionRefusedError()))
    assert connector.stoppedConnecting  # type: ignore[attr-defined]


def test_aBodyIs400() -> None:
    proxy = Proxy()
    proxy.send(b"CONNECT 192.0.2.7:443 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
    assert proxy.client.value().startswith(b"HTTP/1.1 400 ")
    assert proxy.connecting() == []


# -- the tunnel --


class Site:
    def __init__(self) -> None:
        from twisted_proxy.frontends.listener import ListenerConnections

        self.connections = ListenerConnections()


class Pair:
    """A tunnel between two StringTransports; the client's can half-close or not."""

    def __init__(self, clientHalfCloses: bool = True) -> None:
        self.reactor = MemoryReactorClock()
        self.site = Site()
        self.ended: list[Tunnel] = []
        self.tunnel = Tunnel(self.reactor, 10.0, "127.0.0.1", "dest", self.ended.append)
        self.client = self._transport(clientHalfCloses)
        self.server = self._transport(True)
        self.tunnel.client.makeConnection(self.client)
        self.tunnel.server.makeConnection(self.server)
        self.tunnel.open(self.site.connections)

    @staticmethod
    def _transport(halfCloses: bool) -> StringTransport:
        transport = StringTransport()
        if halfCloses:
            directlyProvides(transport, IHalfCloseableDescriptor)
            transport.loseWriteConnection = lambda: setattr(  # type: ignore[attr-defined]
                transport, "halfClosed", True
            )
        return transport


def test_bytesBothWaysCountedAndLogged() -> None:
    pair = Pair()
    assert pair.client.value() == b""
    pair.tunnel.client.dataReceived(b"up" * 10)
    pair.tunnel.server.dataReceived(b"down")
    assert pair.server.value() == b"up" * 10
    assert pair.client.value() == b"down"
    assert pair.tunnel in pair.site.connections.live
    pair.tunnel.client.connectionLost()
    assert pair.server.disconnecting
    pair.tunnel.server.connectionLost()
    assert pair.ended == [pair.tunnel]
    assert (pair.tunnel.down, pair.tunnel.up) == (4, 20)
    assert pair.tunnel.endReason is None
    assert pair.tunnel not in pair.site.connections.live
    assert pair.reactor.getDelayedCalls() == []


def test_aFinIsPassedOnAsAHalfClose() -> None:
    """The client's FIN half-closes the destination; its answer still flows."""
    pair = Pair()
    pair.tunnel.client.readConnectionLost()
    assert getattr(pair.server, "halfClosed", False)
    assert not pair.server.disconnecting
    pair.client.clear()
    pair.tunnel.server.dataReceived(b"answer")
    assert pair.client.value() == b"answer"
    pair.tunnel.server.readConnectionLost()
    assert getattr(pair.client, "halfClosed", False)
    # Both directions over: both connections closed.
    assert pair.client.disconnecting
    assert pair.server.disconnecting


def test_noHalfCloseOverTLSClosesOnceSent() -> None:
    """The destination's FIN to a client without half-close: closed after the data."""
    pair = Pair(clientHalfCloses=False)
    pair.tunnel.server.dataReceived(b"last")
    pair.tunnel.server.readConnectionLost()
    assert pair.client.value().endswith(b"last")
    assert pair.client.disconnecting


def test_idleTunnelsAreCut() -> None:
    """No byte either way for idle_timeout: both aborted, logged idle-timeout."""
    pair = Pair()
    pair.reactor.advance(6)
    pair.tunnel.client.dataReceived(b"x")
    pair.reactor.advance(6)
    assert not pair.client.disconnecting
    pair.reactor.advance(4)
    # StringTransport's abortConnection only marks it.
    assert pair.client.disconnecting
    assert pair.server.disconnecting
    pair.tunnel.client.connectionLost()
    pair.tunnel.server.connectionLost()
    assert pair.ended == [pair.tunnel]
    assert pair.tunnel.endReason == "idle-timeout"
    assert pair.reactor.getDelayedCalls() == []


def test_graceOverCutsBoth() -> None:
    pair = Pair()
    pair.tunnel.drain()
    assert not pair.client.disconnecting
    pair.site.connections.abortAll()
    assert pair.client.disconnecting
    assert pair.server.disconnecting
    pair.tunnel.server.connectionLost()
    pair.tunnel.client.connectionLost()
    assert pair.tunnel.endReason == "shutdown-grace"


# -- proxy authentication --

# Written by Apache's htpasswd -B for "s3cret pass".
ALICE = "alice:$2y$05$o5lKqDmifsIlBx3//KTJReYVefOvty8D3goFKF7reAKHWTx4s9/5u\n"


def withUsers(tmp_path: Any) -> Proxy:
    """A proxy whose tunnels need alice's password (checked at once)."""
    from twisted.internet.defer import succeed

    from twisted_proxy.frontends.proxyauth import ProxyUsers, checkPassword

    users = tmp_path / "htpasswd"
    users.write_text(ALICE)
    proxy = Proxy(CONFIG + f'users = "{users}"\n')
    gate = proxy.factory.connectGate
    gate.users = ProxyUsers(str(users), None, lambda p, h: succeed(checkPassword(p, h)))
    return proxy


def auth(credentials: bytes) -> bytes:
    import base64

    return b"Proxy-Authorization: Basic " + base64.b64encode(credentials) + b"\r\n"


def test_noCredentialsIs407(tmp_path: Any) -> None:
    """Asked for Basic credentials, with nothing about the destination said."""
    proxy = withUsers(tmp_path)
    proxy.send(b"CONNECT 192.0.2.7:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = proxy.client.value()
    assert reply.startswith(b"HTTP/1.1 407 ")
    assert b'\r\nProxy-Authenticate: Basic realm="localhost", charset="UTF-8"\r\n' in (
        reply
    )
    assert proxy.connecting() == []
    assert proxy.client.disconnecting


def test_wrongPasswordIs407(tmp_path: Any) -> None:
    proxy = withUsers(tmp_path)
    proxy.send(b"CONNECT 192.0.2.7:443 HTTP/1.1\r\n" + auth(b"alice:guess") + b"\r\n")
    assert proxy.client.value().startswith(b"HTTP/1.1 407 ")
    assert proxy.connecting() == []


def test_rightPasswordOpensAndLogsTheUser(tmp_path: Any) -> None:
    """alice's password: connected; the tunnel's log line names alice."""
    proxy = withUsers(tmp_path)
    proxy.send(
        b"CONNECT 192.0.2.7:443 HTTP/1.1\r\n" + auth(b"alice:s3cret pass") + b"\r\n"
    )
    assert [h for h, _, _ in proxy.connecting()] == ["192.0.2.7"]
    proxy.accept()
    assert proxy.client.value() == CONNECTED
    [tunnel] = proxy.factory.connections.live
    tunnel.client.connectionLost()
    tunnel.server.connectionLost()
    assert proxy.log.users == ["alice"]


def test_clientRefusedBeforeCredentials(tmp_path: Any) -> None:
    """A client outside allow_clients gets 403, not an invitation to log in."""
    proxy = withUsers(tmp_path)
    proxy.client = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 5))
    proxy.channel = proxy.factory.buildProtocol(None)
    proxy.channel.makeConnection(proxy.client)
    proxy.send(b"CONNECT 192.0.2.7:443 HTTP/1.1\r\n" + auth(b"alice:x") + b"\r\n")
    assert proxy.client.value().startswith(b"HTTP/1.1 403 ")


def test_anEmptyClientListLetsNobodyIn() -> None:
    """allow_clients = []: every CONNECT is 403 (not everyone let in)."""
    text = CONFIG.replace(
        "allow_ports = [443]", "allow_ports = [443]\nallow_clients = []"
    )
    proxy = Proxy(text)
    proxy.send(connect(b"192.0.2.7:443"))
    assert proxy.client.value().startswith(b"HTTP/1.1 403 ")
    assert proxy.connecting() == []
