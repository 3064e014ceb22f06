"""
The frame relay between a client's and a backend's WebSocket connections,
on StringTransports and a Clock: what each peer receives, when each
connection is closed, and what the bridge that owns the relay is told.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.unit.test_wsframes import frame
from twisted_proxy.config.model import WebSocketSettings
from twisted_proxy.core.wsframes import OP_CLOSE, OP_PING, OP_PONG
from twisted_proxy.frontends.wsrelay import CLOSE_TIMEOUT, FrameRelay

MASK = b"\x01\x02\x03\x04"


class Owner:
    """A bridge that writes down what the relay tells it."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def relayed(self, fromBackend: bool, count: int) -> None:
        self.events.append(("relayed", fromBackend, count))

    def refused(self, fromBackend: bool, code: int, reason: str) -> None:
        self.events.append(("refused", fromBackend, code, reason))

    def backendEnded(self) -> None:
        self.events.append(("backendEnded",))

    def relayGone(self) -> None:
        self.events.append(("gone",))


class Pair:
    """A relay with both sides connected to StringTransports."""

    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        self.owner = Owner()
        self.relay = FrameRelay(self.owner, self.clock, WebSocketSettings(**settings))
        self.client = StringTransport()
        self.backend = StringTransport()
        self.relay.client.makeConnection(self.client)
        self.relay.backend.makeConnection(self.backend)
        self.relay.start()

    def fromClient(self, data: bytes) -> None:
        self.relay.client.dataReceived(data)

    def fromBackend(self, data: bytes) -> None:
        self.relay.backend.dataReceived(data)

    def lose(self, backend: bool) -> None:
        side = self.relay.backend if backend else self.relay.client
        side.connectionLost(Failure(ConnectionDone()))


def frames(data: bytes) -> list[tuple[int, bytes, bool]]:
    """Each short frame in C{data}: opcode, payload (unmasked), whether masked."""
    found = []
    while data:
        opcode, length, masked = data[0] & 0x0F, data[1] & 0x7F, bool(data[1] & 0x80)
        assert length < 126
        offset = 6 if masked else 2
        payload = data[offset : offset + length]
        if masked:
            key = data[2:6]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        found.append((opcode, payload, masked))
        data = data[offset + length :]
    return found


def close(code: int, reason: bytes = b"", mask: bytes | None = MASK) -> bytes:
    return frame(struct.pack("!H", code) + reason, OP_CLOSE, mask=mask)


def test_framesGoBothWaysAsTheyCame() -> None:
    """Each side's frames reach the other byte for byte; messages are counted."""
    pair = Pair()
    up = frame(b"hello", 1, mask=MASK) + frame(b"\x00" * 300, 2, mask=MASK)
    pair.fromClient(up)
    assert pair.backend.value() == up
    down = frame(b"there", 1, mask=None)
    pair.fromBackend(down)
    assert pair.client.value() == down
    assert pair.owner.events == [("relayed", False, 2), ("relayed", True, 1)]


def test_aClientCloseIsAnsweredAndCarriedOn() -> None:
    """The client's close is echoed to it and sent on to the backend."""
    pair = Pair()
    pair.fromClient(close(1000, b"bye"))
    assert frames(pair.client.value()) == [(OP_CLOSE, b"\x03\xe8bye", False)]
    assert pair.client.disconnecting
    assert frames(pair.backend.value()) == [(OP_CLOSE, b"\x03\xe8bye", True)]
    assert not pair.backend.disconnecting
    pair.fromBackend(close(1000, b"bye", mask=None))
    assert pair.backend.disconnecting
    # The backend's answer is not sent to the client a second time.
    assert len(frames(pair.client.value())) == 1
    pair.lose(backend=False)
    pair.lose(backend=True)
    assert pair.owner.events == [("gone",)]
    assert pair.clock.getDelayedCalls() == []


def test_aBackendThatDiesClosesTheClientWith1011() -> None:
    """A backend gone without a close: 1011 to the client, and the bridge told."""
    pair = Pair()
    pair.lose(backend=True)
    [(opcode, payload, masked)] = frames(pair.client.value())
    assert (opcode, payload[:2], masked) == (OP_CLOSE, struct.pack("!H", 1011), False)
    assert pair.owner.events == [("backendEnded",)]
    pair.fromClient(close(1011))
    assert pair.client.disconnecting
    pair.lose(backend=False)
    assert pair.owner.events[-1] == ("gone",)
    assert pair.clock.getDelayedCalls() == []


def test_aClientThatLeavesClosesTheBackendWith1001() -> None:
    """A client gone without a close: 1001 to the backend, masked."""
    pair = Pair()
    pair.lose(backend=False)
    [(opcode, payload, masked)] = frames(pair.backend.value())
    assert (opcode, payload[:2], masked) == (OP_CLOSE, struct.pack("!H", 1001), True)
    assert pair.owner.events == []


def test_noCloseInsideAFrame() -> None:
    """A side that ends in the middle of a frame: the other is cut, not closed."""
    pair = Pair()
    big = frame(b"x" * 100, 2, mask=None)
    pair.fromBackend(big[:50])
    pair.lose(backend=True)
    assert pair.client.value() == big[:50]
    assert pair.client.disconnected


def test_aBrokenRuleIs1002ToTheSenderAfterTheOtherClosed() -> None:
    """
    An unmasked client frame: 1001 to the backend first; what the backend
    sent before its answer still reaches the client, then 1002 does.
    """
    pair = Pair()
    pair.fromClient(frame(b"bad", 1, mask=None))
    [(_, toBackend, _)] = frames(pair.backend.value())
    assert toBackend[:2] == struct.pack("!H", 1001)
    assert pair.client.value() == b""
    assert pair.owner.events == [
        ("refused", False, 1002, "unmasked frame from a client")
    ]
    echo = frame(b"echo", 1, mask=None)
    pair.fromBackend(echo + close(1001, mask=None))
    assert pair.backend.disconnecting
    assert pair.client.value().startswith(echo)
    [(_, _, _), (opcode, toClient, _)] = frames(pair.client.value())
    assert (opcode, toClient[:2]) == (OP_CLOSE, struct.pack("!H", 1002))
    # The client's answer ends its connection.
    pair.fromClient(close(1002))
    assert pair.client.disconnecting


def test_aBackendBreakingTheRulesGets1002AfterTheClientClosed() -> None:
    """A reserved opcode from the backend: 1011 to the client, then 1002 back."""
    pair = Pair()
    pair.fromBackend(bytes((0x83, 0)))
    assert pair.owner.events == [("refused", True, 1002, "reserved opcode 3")]
    [(_, toClient, _)] = frames(pair.client.value())
    assert toClient[:2] == struct.pack("!H", 1011)
    pair.fromClient(close(1011))
    assert pair.client.disconnecting
    [(_, toBackend, masked)] = frames(pair.backend.value())
    assert (toBackend[:2], masked) == (struct.pack("!H", 1002), True)


def test_aMessageOverTheLimitIs1009BothWays() -> None:
    """A message over max_message_bytes: 1009 to both, none of it sent on."""
    pair = Pair(max_message_bytes=10)
    pair.fromClient(frame(b"x" * 11, 2, mask=MASK))
    [(_, toBackend, _)] = frames(pair.backend.value())
    assert toBackend[:2] == struct.pack("!H", 1009)
    pair.lose(backend=True)
    [(_, toClient, _)] = frames(pair.client.value())
    assert toClient[:2] == struct.pack("!H", 1009)


def test_aCloseUnansweredIsCut() -> None:
    """A side that does not answer a close within the timeout is dropped."""
    pair = Pair()
    pair.fromClient(close(1000))
    pair.clock.advance(CLOSE_TIMEOUT - 0.1)
    assert not pair.backend.disconnecting
    pair.clock.advance(0.2)
    assert pair.backend.disconnected


def test_pingsGoThroughAndPongsComeBack() -> None:
    """A peer's ping and its pong are relayed as they came."""
    pair = Pair()
    ping = frame(b"p1", OP_PING, mask=MASK)
    pair.fromClient(ping)
    assert pair.backend.value() == ping
    pong = frame(b"p1", OP_PONG, mask=None)
    pair.fromBackend(pong)
    assert pair.client.value() == pong


def test_theRelayPingsAndDropsASideThatDoesNotAnswer() -> None:
    """With ping_interval, each side is pinged; its pong is kept, silence cuts."""
    pair = Pair(ping_interval=10)
    pair.clock.advance(10)
    [(opcode, toClient, masked)] = frames(pair.client.value())
    assert (opcode, masked) == (OP_PING, False)
    [(opcode, toBackend, masked)] = frames(pair.backend.value())
    assert (opcode, masked) == (OP_PING, True)
    pair.client.clear()
    before = pair.backend.value()
    pair.fromClient(frame(toClient, OP_PONG, mask=MASK))
    # The pong answered the relay: it is not sent on to the backend.
    assert pair.backend.value() == before
    pair.clock.advance(10)
    assert pair.backend.disconnected
    assert not pair.client.disconnecting
    assert frames(pair.client.value())[0][0] == OP_PING


def test_noPingInsideAFrame() -> None:
    """A side in the middle of the other's frame is not pinged then."""
    pair = Pair(ping_interval=10)
    big = frame(b"x" * 100, 2, mask=MASK)
    pair.fromClient(big[:40])
    pair.clock.advance(10)
    assert pair.backend.value() == big[:40]
    assert frames(pair.client.value())[0][0] == OP_PING


def test_idleSidesAreClosedWith1001() -> None:
    """No data frame either way for idle_timeout: both closed with 1001."""
    pair = Pair(idle_timeout=30)
    pair.clock.advance(20)
    pair.fromBackend(frame(b"news", 1, mask=None))
    pair.client.clear()
    pair.clock.advance(29)
    assert pair.client.value() == b""
    pair.clock.advance(1)
    [(_, payload, _)] = frames(pair.client.value())
    assert payload == struct.pack("!H", 1001) + b"idle"
    assert frames(pair.backend.value())[0][1] == struct.pack("!H", 1001) + b"idle"


def test_aTooBigFrameSpanningReadsStillGetsCloses() -> None:
    """A frame over the limit, its payload still coming: 1009, not a cut."""
    pair = Pair(max_message_bytes=1000)
    big = frame(b"x" * 5000, 2, mask=MASK)
    pair.fromClient(big[:2000])
    [(_, toBackend, _)] = frames(pair.backend.value())
    assert toBackend[:2] == struct.pack("!H", 1009)
    assert not pair.backend.disconnected
    pair.fromClient(big[2000:])
    pair.fromBackend(close(1009, mask=None))
    [(_, toClient, _)] = frames(pair.client.value())
    assert toClient[:2] == struct.pack("!H", 1009)


def test_invalidTextIs1007ToTheSender() -> None:
    """A client's text that is not UTF-8: the backend never sees it; 1007 back."""
    pair = Pair()
    pair.fromClient(frame(b"\xff\xfe", 1, mask=MASK))
    [(opcode, toBackend, _)] = frames(pair.backend.value())
    assert (opcode, toBackend[:2]) == (OP_CLOSE, struct.pack("!H", 1001))
    pair.fromBackend(close(1001, mask=None))
    [(_, toClient, _)] = frames(pair.client.value())
    assert toClient[:2] == struct.pack("!H", 1007)
    assert pair.owner.events == [("refused", False, 1007, "text is not UTF-8")]
