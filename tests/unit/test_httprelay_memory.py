"""
The HTTP relay in memory: a client on a StringTransport talks to the proxy's
own front end, whose ReverseProxyResource reaches backends through a
MemoryReactorClock; each backend connection is played by hand on a
StringTransport of its own. What the client received and what the backend
received are both checked.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from twisted_proxy.balancer import BalancerService
from twisted_proxy.config import parseTarget
from twisted_proxy.config.model import Balancer, Member, ProxySettings, Route, Target
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.http1 import HTTPProxyFactory, HTTPServerChannel
from twisted_proxy.frontends.httprelay import ReverseProxyResource


class Proxy:
    """A proxy front end with one route, on a memory reactor."""

    def __init__(self, to: str, balancer: Balancer | None = None) -> None:
        self.reactor = MemoryReactorClock()
        settings = ProxySettings()
        service = None
        if balancer is not None:
            service = BalancerService([balancer], self.reactor)
        self.balancer = service
        self.context = ProxyContext.create(
            settings,
            self.reactor,
            balancer=service,
            balancers={balancer.name: balancer} if balancer is not None else None,
        )
        target = (
            Target(to, "balancer", balancer.name, 0, "/")
            if balancer is not None
            else parseTarget(to)
        )
        resource = ReverseProxyResource(
            Route(path="/", to=target), self.context, mountedAtRoute=True
        )
        factory = HTTPProxyFactory(resource, settings, self.reactor)
        self.channel: HTTPServerChannel = factory.buildProtocol(None)
        self.client = StringTransport()
        self.channel.makeConnection(self.client)

    def send(self, data: bytes) -> None:
        """The client sends C{data}."""
        self.channel.dataReceived(data)

    def attempts(self) -> list[int]:
        """The ports the proxy has tried to connect to, in order."""
        return [port for _, port, *_ in self.reactor.tcpClients]

    def accept(self, index: int = -1) -> tuple[Protocol, StringTransport]:
        """The backend accepts the connection attempt C{index}."""
        _, _, factory, _, _ = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, Protocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def refuse(self, index: int = -1) -> None:
        """The backend refuses the connection attempt C{index}."""
        _, _, factory, _, _ = self.reactor.tcpClients[index]
        connector = self.reactor.connectors[index]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))


def members(*ports: int, **config: Any) -> Balancer:
    """Balancer "web" of members on 127.0.0.1 at C{ports}."""
    return Balancer(
        "web",
        members=tuple(
            Member(f"http://127.0.0.1:{p}", "http", "127.0.0.1", p) for p in ports
        ),
        **config,
    )


GET = b"GET /x?y=1 HTTP/1.1\r\nHost: front.test\r\n\r\n"


def test_aResponseInPieces() -> None:
    """A backend answering in pieces: the client gets each piece as it comes."""
    proxy = Proxy("http://127.0.0.1:3000/")
    proxy.send(GET)
    assert proxy.attempts() == [3000]
    backend, wire = proxy.accept()
    sent = wire.value()
    assert sent.startswith(b"GET /x?y=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:3000\r\n" in sent
    assert b"\r\nX-Forwarded-Host: front.test\r\n" in sent
    assert b"\r\nX-Forwarded-For: " in sent
    backend.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n")
    assert proxy.client.value() == b""
    backend.dataReceived(b"Content-Type: text/plain\r\n\r\nabc")
    head = proxy.client.value()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\nabc")
    assert b"Content-Length: 9\r\n" in head
    backend.dataReceived(b"def")
    assert proxy.client.value().endswith(b"abcdef")
    backend.dataReceived(b"ghi")
    assert proxy.client.value().endswith(b"\r\n\r\nabcdefghi")
    assert not proxy.client.disconnecting


def test_aBackendDyingMidBodyCutsTheClient() -> None:
    """A backend gone half-way through its body: the client's connection is cut."""
    proxy = Proxy("http://127.0.0.1:3000/")
    proxy.send(GET)
    backend, _ = proxy.accept()
    backend.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
    assert proxy.client.value().endswith(b"\r\n\r\n0123")
    backend.connectionLost(Failure(ConnectionLost()))
    assert proxy.client.value().endswith(b"\r\n\r\n0123")
    assert proxy.client.disconnecting or proxy.client.disconnected


def test_aBodyStreamsToTheBackend() -> None:
    """A POST's body goes to the backend as the client sends it, chunk by chunk."""
    proxy = Proxy("http://127.0.0.1:3000/")
    proxy.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc")
    backend, wire = proxy.accept()
    assert wire.value().startswith(b"POST /up HTTP/1.1\r\n")
    assert wire.value().endswith(b"\r\n\r\nabc")
    proxy.send(b"def")
    assert wire.value().endswith(b"\r\n\r\nabcdef")
    backend.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert proxy.client.value().startswith(b"HTTP/1.1 204 No Content\r\n")


def test_aRefusedMemberFailsOver() -> None:
    """A member refusing the connection: the GET goes to the next one."""
    proxy = Proxy("balancer://web/", members(3001, 3002, method="bybusyness"))
    proxy.send(GET)
    first = proxy.attempts()[0]
    proxy.refuse()
    attempts = proxy.attempts()
    assert len(attempts) == 2
    assert attempts[1] != first
    backend, wire = proxy.accept()
    assert wire.value().startswith(b"GET /x?y=1 HTTP/1.1\r\n")
    backend.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert proxy.client.value().endswith(b"\r\n\r\nok")
    assert proxy.balancer is not None
    served = proxy.balancer.members("web")
    assert sorted(m.failures for m in served) == [0, 1]
    assert all(m.inFlight == 0 for m in served)


def test_aPostIsNotSentAgainAfterAReset() -> None:
    """A member dropping a POST unanswered: 502, and no other member gets it."""
    proxy = Proxy("balancer://web/", members(3001, 3002))
    proxy.send(b"POST /pay HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
    backend, wire = proxy.accept()
    assert wire.value().endswith(b"\r\n\r\nhi")
    backend.connectionLost(Failure(ConnectionLost()))
    assert len(proxy.attempts()) == 1
    assert proxy.client.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert proxy.balancer is not None
    assert [m.inFlight for m in proxy.balancer.members("web")] == [0, 0]


def test_aGetIsSentToAnotherMemberAfterAReset() -> None:
    """A member dropping a GET unanswered: another member answers it."""
    proxy = Proxy("balancer://web/", members(3001, 3002))
    proxy.send(GET)
    backend, _ = proxy.accept()
    backend.connectionLost(Failure(ConnectionLost()))
    assert len(proxy.attempts()) == 2
    second, wire = proxy.accept()
    assert wire.value().startswith(b"GET /x?y=1 HTTP/1.1\r\n")
    second.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert proxy.client.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert proxy.client.value().endswith(b"\r\n\r\nok")


def test_theLastMemberRefusingIs502() -> None:
    """The only member refusing, none left to try: the client gets 502."""
    proxy = Proxy("balancer://web/", members(3001, max_attempts=0))
    proxy.send(GET)
    proxy.refuse()
    assert proxy.attempts() == [3001]
    assert proxy.client.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


def test_noUsableMemberIs503() -> None:
    """Every member disabled: the client gets 503 and nothing is connected."""
    disabled = Member("http://127.0.0.1:3001", "http", "127.0.0.1", 3001, disabled=True)
    proxy = Proxy("balancer://web/", Balancer("web", members=(disabled,)))
    proxy.send(GET)
    assert proxy.attempts() == []
    assert proxy.client.value().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert proxy.client.value().endswith(b"\r\n\r\nno backend available\n")


def test_theClientGoingAwayReleasesTheMember() -> None:
    """A client gone before the answer: the member is released, not in error."""
    proxy = Proxy("balancer://web/", members(3001))
    proxy.send(GET)
    backend, wire = proxy.accept()
    assert proxy.balancer is not None
    [member] = proxy.balancer.members("web")
    # Another request holds the member too, so a second release would show.
    assert proxy.balancer.pick("web") is member
    assert member.inFlight == 2
    proxy.channel.connectionLost(Failure(ConnectionLost()))
    assert (member.inFlight, member.failures) == (1, 0)
    assert wire.disconnecting or wire.disconnected
    backend.connectionLost(Failure(ConnectionLost()))
    assert (member.inFlight, member.failures) == (1, 0)


def _cyclicGarbage(relay: Callable[[], None]) -> list[str]:
    """The names of the types left in reference cycles by C{relay}()."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        relay()
        gc.collect()
        return sorted({type(o).__name__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_aRelayedRequestLeavesNoReferenceCycle() -> None:
    """
    Requests relayed on a kept-alive connection, to a fixed backend and
    through a balancer, are freed by reference counting alone: none leaves
    a cycle (of the exchange, its lease, its request) for the garbage
    collector, which would let memory grow between its passes.
    """
    for proxy in (
        Proxy("http://127.0.0.1:3000/"),
        Proxy("balancer://web/", members(3000)),
    ):
        proxy.send(GET)
        backend, wire = proxy.accept()

        def relay(proxy: Proxy = proxy, backend: Protocol = backend) -> None:
            for _ in range(20):
                proxy.send(GET)
                backend.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        backend.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert _cyclicGarbage(relay) == []
        assert proxy.client.value().count(b"HTTP/1.1 200 OK\r\n") == 21
        assert wire.value().count(b"GET /x?y=1 HTTP/1.1\r\n") == 21
