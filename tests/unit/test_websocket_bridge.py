"""
The WebSocket bridge in memory: a client on a StringTransport upgrades
through the proxy's own front end; the backend's connection is played by hand
on a StringTransport of its own, and Autobahn's timers run on the same
MemoryReactorClock. What the client received and what the backend received
are both checked, frame by frame.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import txaio
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from twisted_proxy.balancer import BalancerService
from twisted_proxy.config import parseTarget
from twisted_proxy.config.model import (
    Balancer,
    Member,
    ProxySettings,
    Route,
    Target,
)
from twisted_proxy.frontends.context import ProxyContext
from twisted_proxy.frontends.http1 import HTTPProxyFactory
from twisted_proxy.frontends.httprelay import ReverseProxyResource
from twisted_proxy.frontends.pipe import ReadingProducer
from twisted_proxy.frontends.websocket import WebSocketUpgrades

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: front.test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class BackendTransport(StringTransport):
    """A backend connection's transport that, like TCP's, may be unregistered twice."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class ClientTransport(StringTransport):
    """The client's connection; C{protocol} is whoever holds it now."""

    protocol: Any = None


@pytest.fixture
def reactor() -> Iterator[MemoryReactorClock]:
    """A memory reactor that Autobahn's timers use too, for the test's length."""
    memory = MemoryReactorClock()
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = memory
    yield memory
    config.loop = previous


class Proxy:
    """A proxy front end with one WebSocket route, on a memory reactor."""

    def __init__(
        self, reactor: MemoryReactorClock, balancer: Balancer | None = None
    ) -> None:
        self.reactor = reactor
        settings = ProxySettings()
        service = BalancerService([balancer], reactor) if balancer else None
        self.balancer = service
        context = ProxyContext.create(
            settings,
            reactor,
            balancer=service,
            balancers={balancer.name: balancer} if balancer else None,
            upgrade=WebSocketUpgrades(),
        )
        target = (
            Target("balancer://web/", "balancer", "web", 0, "/")
            if balancer
            else parseTarget("ws://127.0.0.1:3000/")
        )
        route = Route(path="/", to=target, websocket=True)
        resource = ReverseProxyResource(route, context, mountedAtRoute=True)
        self.channel = HTTPProxyFactory(resource, settings, reactor).buildProtocol(None)
        self.client = ClientTransport()
        self.channel.makeConnection(self.client)

    def attempts(self) -> list[int]:
        """The ports the proxy has tried to connect to, in order."""
        return [port for _, port, *_ in self.reactor.tcpClients]

    def accept(self) -> tuple[Protocol, StringTransport]:
        """The backend accepts the latest connection attempt."""
        _, _, factory, _, _ = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, Protocol)
        transport = BackendTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def refuse(self) -> None:
        """The backend refuses the latest connection attempt."""
        _, _, factory, _, _ = self.reactor.tcpClients[-1]
        connector = self.reactor.connectors[-1]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))

    def clientSends(self, data: bytes) -> None:
        """The client's bytes, to whichever protocol holds its connection now."""
        self.client.protocol.dataReceived(data)


def accepted(handshake: bytes) -> bytes:
    """The backend's 101 for the opening handshake it received."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in handshake.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def frame(payload: bytes, opcode: int = 1, mask: bytes | None = None) -> bytes:
    """One final frame (short payload), masked when C{mask} is given."""
    head = bytes([0x80 | opcode])
    if mask is None:
        return head + bytes([len(payload)]) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + bytes([0x80 | len(payload)]) + mask + masked


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each whole short frame in C{data}, unmasked."""
    found = []
    while len(data) >= 2:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert length < 126
        offset = 2
        mask = b""
        if data[1] & 0x80:
            mask, offset = data[2:6], 6
        payload = data[offset : offset + length]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        found.append((opcode, payload))
        data = data[offset + length :]
    return found


def wsBalancer(*ports: int, **config: Any) -> Balancer:
    """Balancer "web" of ws:// members on 127.0.0.1 at C{ports}."""
    return Balancer(
        "web",
        members=tuple(
            Member(f"ws://127.0.0.1:{p}", "ws", "127.0.0.1", p) for p in ports
        ),
        **config,
    )


def bridged(proxy: Proxy) -> tuple[Protocol, StringTransport]:
    """Upgrade the client through the proxy to a backend that accepts."""
    proxy.channel.dataReceived(UPGRADE)
    backend, wire = proxy.accept()
    handshake = wire.value()
    wire.clear()
    backend.dataReceived(accepted(handshake))
    return backend, wire


def test_anUpgradeIsBridged(reactor: MemoryReactorClock) -> None:
    """A 101 upgrade: the backend's handshake first, then messages both ways."""
    proxy = Proxy(reactor)
    proxy.channel.dataReceived(UPGRADE)
    assert proxy.attempts() == [3000]
    assert proxy.client.value() == b""
    backend, wire = proxy.accept()
    handshake = wire.value()
    assert handshake.startswith(b"GET /chat HTTP/1.1\r\n")
    assert b"\r\nX-Forwarded-Host: front.test\r\n" in handshake
    wire.clear()
    backend.dataReceived(accepted(handshake))
    answer = proxy.client.value()
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer
    proxy.client.clear()

    proxy.clientSends(frame(b"hello", mask=b"\x01\x02\x03\x04"))
    assert frames(wire.value()) == [(1, b"hello")]
    backend.dataReceived(frame(b"there", opcode=2))
    assert frames(proxy.client.value()) == [(2, b"there")]


def test_theTransportsPauseEachOther(reactor: MemoryReactorClock) -> None:
    """Once open, each side's transport pauses and resumes reading the other."""
    proxy = Proxy(reactor)
    _, wire = bridged(proxy)
    toClient = proxy.client.producer
    toBackend = wire.producer
    assert isinstance(toClient, ReadingProducer)
    assert isinstance(toBackend, ReadingProducer)
    toClient.pauseProducing()
    assert wire.producerState == "paused"
    toClient.resumeProducing()
    assert wire.producerState == "producing"
    toBackend.pauseProducing()
    assert proxy.client.producerState == "paused"
    # The backend's connection gone: the client is never left paused.
    toBackend.stopProducing()
    assert proxy.client.producerState == "producing"


def test_aRefusedHandshakeGivesItsStatus(reactor: MemoryReactorClock) -> None:
    """A backend refusing the upgrade: the client gets the backend's status."""
    proxy = Proxy(reactor)
    proxy.channel.dataReceived(UPGRADE)
    backend, wire = proxy.accept()
    backend.dataReceived(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert wire.disconnecting
    backend.connectionLost(Failure(ConnectionDone()))
    answer = proxy.client.value()
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert answer.endswith(b"backend refused the WebSocket\n")


def test_anUnreachableBackendIs502(reactor: MemoryReactorClock) -> None:
    """A backend refusing the connection: the client gets 502."""
    proxy = Proxy(reactor)
    proxy.channel.dataReceived(UPGRADE)
    proxy.refuse()
    assert proxy.client.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


def test_aRefusedMemberFailsOverAndIsReleasedOnce(
    reactor: MemoryReactorClock,
) -> None:
    """A member refusing: the next one takes the WebSocket, released once it ends."""
    proxy = Proxy(reactor, wsBalancer(3001, 3002, method="bybusyness"))
    proxy.channel.dataReceived(UPGRADE)
    proxy.refuse()
    assert len(proxy.attempts()) == 2
    backend, wire = proxy.accept()
    handshake = wire.value()
    backend.dataReceived(accepted(handshake))
    assert proxy.client.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert proxy.balancer is not None
    members = proxy.balancer.members("web")
    assert sorted(m.failures for m in members) == [0, 1]
    assert sum(m.inFlight for m in members) == 1
    proxy.client.protocol.connectionLost(Failure(ConnectionDone()))
    backend.connectionLost(Failure(ConnectionDone()))
    assert [m.inFlight for m in members] == [0, 0]
    assert sorted(m.failures for m in members) == [0, 1]


def test_aClientGoneDuringTheHandshakeReleasesOnce(
    reactor: MemoryReactorClock,
) -> None:
    """A client gone before the backend accepted: the member is released once."""
    proxy = Proxy(reactor, wsBalancer(3001))
    assert proxy.balancer is not None
    [member] = proxy.balancer.members("web")
    # Another request holds the member too, so a second release would show.
    assert proxy.balancer.pick("web") is member
    proxy.channel.dataReceived(UPGRADE)
    backend, wire = proxy.accept()
    assert member.inFlight == 2
    proxy.channel.connectionLost(Failure(ConnectionDone()))
    assert wire.disconnecting
    assert (member.inFlight, member.failures) == (1, 0)
    backend.connectionLost(Failure(ConnectionDone()))
    assert (member.inFlight, member.failures) == (1, 0)
    assert proxy.client.value() == b""


def test_aHandshakeRefusedWithAFailOnStatus(reactor: MemoryReactorClock) -> None:
    """A member refusing the upgrade with a fail_on_status status is in error."""
    proxy = Proxy(reactor, wsBalancer(3001, fail_on_status=(503,)))
    proxy.channel.dataReceived(UPGRADE)
    backend, _ = proxy.accept()
    backend.dataReceived(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    backend.connectionLost(Failure(ConnectionDone()))
    assert proxy.client.value().startswith(b"HTTP/1.1 503 ")
    assert proxy.balancer is not None
    [member] = proxy.balancer.members("web")
    assert (member.inFlight, member.lastFailure) == (0, "answered 503")


def test_aListenerDrainClosesBothLegs(reactor: MemoryReactorClock) -> None:
    """A graceful stop closes both legs with 1001, and is over once both are gone."""
    proxy = Proxy(reactor)
    backend, wire = bridged(proxy)
    proxy.client.clear()
    drained = proxy.channel.site.drain()
    goingAway = struct.pack("!H", 1001)
    assert frames(proxy.client.value())[0][0] == 8
    assert frames(proxy.client.value())[0][1].startswith(goingAway)
    assert frames(wire.value())[0][0] == 8
    assert frames(wire.value())[0][1].startswith(goingAway)
    assert not drained.called
    proxy.client.protocol.connectionLost(Failure(ConnectionDone()))
    backend.connectionLost(Failure(ConnectionDone()))
    assert drained.called
