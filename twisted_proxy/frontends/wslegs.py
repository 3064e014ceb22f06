"""
The backend's side of a WebSocket bridge until its handshake is done: an
Autobahn client leg makes the opening handshake (and reports a refusal, a
timeout, a bad answer), behind a L{Handover} that is the connection's
protocol throughout and, once the backend accepted, hands the connection to
the frame relay (L{twisted_proxy.frontends.wsrelay}).
"""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectingRequest
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.config.model import WebSocketSettings

__all__ = [
    "BackendLeg",
    "Handover",
    "LegOwner",
    "OneLeg",
    "legFactory",
]


class LegOwner(Protocol):
    """What the backend leg tells the bridge that owns it."""

    def connectingRequest(self) -> ConnectingRequest:
        """The backend leg's opening handshake."""

    def backendOpen(self, leg: BackendLeg) -> None:
        """The backend accepted the handshake."""

    def handshakeEnded(self, leg: BackendLeg) -> None:
        """The backend's connection ended before it accepted."""


class BackendLeg(WebSocketClientProtocol):  # type: ignore[misc]
    """The opening handshake with the backend: the proxy is its client."""

    bridge: LegOwner
    refusedStatus: int | None = None
    lostReason: Failure | None = None
    failedHandshake: str | None = None

    def onConnecting(self, transport_details: Any) -> ConnectingRequest:
        return self.bridge.connectingRequest()

    def onOpen(self) -> None:
        self.bridge.backendOpen(self)

    def failHandshake(self, reason: str) -> None:
        line = getattr(self, "http_status_line", None)
        if line:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and parts[1] != "101":
                self.refusedStatus = int(parts[1])
        self.failedHandshake = reason
        super().failHandshake(reason)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lostReason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn leaves this timer behind when the connection is lost.
        timer = getattr(self, "closeHandshakeTimeoutCall", None)
        if timer is not None:
            timer.cancel()
            self.closeHandshakeTimeoutCall = None
        self.bridge.handshakeEnded(self)

    def takeRest(self) -> bytes:
        """What the backend sent after its 101, taken from Autobahn's buffer."""
        rest: bytes = self.data
        self.data = b""
        return rest


@implementer(IProtocol)
class Handover:
    """
    The backend connection's protocol: it passes everything to the
    handshake's leg, then (L{handTo}) to the relay's side.
    """

    __slots__ = ("connected", "current", "transport")

    def __init__(self, leg: BackendLeg) -> None:
        self.transport: Any = None
        self.connected = 0
        self.current: Any = leg

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.connected = 1
        self.current.makeConnection(transport)

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        self.current.dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = 0
        self.current.connectionLost(reason)

    def handTo(self, protocol: Any) -> None:
        """From now on the connection is C{protocol}'s."""
        self.current = protocol
        protocol.makeConnection(self.transport)


def legFactory(
    settings: WebSocketSettings, handshakeTimeout: float
) -> WebSocketClientFactory:
    """The Autobahn factory every backend leg's handshake shares."""
    client = WebSocketClientFactory(useragent=None)
    client.setProtocolOptions(
        maxMessagePayloadSize=settings.max_message_bytes,
        maxFramePayloadSize=0,
        openHandshakeTimeout=handshakeTimeout,
        closeHandshakeTimeout=5,
        failByDrop=False,
        tcpNoDelay=True,
    )
    return client


class OneLeg(Factory):
    """Connects one backend connection (its L{Handover}), quietly."""

    noisy = False

    def __init__(self, handover: Handover) -> None:
        self._handover = handover

    def buildProtocol(self, addr: Any) -> Any:
        return self._handover
