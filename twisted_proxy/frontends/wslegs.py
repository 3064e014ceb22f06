"""
The two legs of a WebSocket bridge: an Autobahn server leg to the client and
an Autobahn client leg to the backend, each relaying message and frame
boundaries and payload to the other as they arrive, so a large message is
never held whole, and reporting its closes to the bridge that owns it.
"""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectingRequest, ConnectionRequest
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from twisted_proxy.config.model import WebSocketSettings

__all__ = [
    "BackendLeg",
    "ClientLeg",
    "Leg",
    "LegOwner",
    "OneLeg",
    "legFactories",
]


class LegOwner(Protocol):
    """What the legs tell the bridge that owns them."""

    def activity(self) -> None:
        """A message began on a leg (for the idle timeout)."""

    def tooBig(self, leg: Leg) -> None:
        """A message over max_message_bytes arrived on C{leg}."""

    def relayed(self, fromBackend: bool) -> None:
        """A whole message went on to the other leg (for the metrics)."""

    def legClosed(
        self, leg: Leg, code: int | None, reason: str | None, clean: bool
    ) -> None:
        """C{leg} closed (its close frame arrived, or it ended without one)."""

    def legGone(self, leg: Leg) -> None:
        """C{leg}'s connection is closed."""

    def acceptance(self) -> Any:
        """What the client leg's onConnect answers: subprotocol, headers."""

    def clientOpen(self) -> None:
        """The client leg is open."""

    def connectingRequest(self) -> ConnectingRequest:
        """The backend leg's opening handshake."""

    def backendOpen(self, leg: BackendLeg) -> None:
        """The backend accepted the handshake."""


# A message in one frame up to this size is relayed as one frame, whole;
# larger ones, and fragmented ones, go on frame by frame as they arrive.
_WHOLE_LIMIT = 65536


class Leg:
    """What both legs do: relay frames to the other leg, report closes."""

    bridge: LegOwner
    other: Any
    fromBackend: bool
    # Bytes of the frame being sent that are still to come (0: between frames).
    _sendingFrame = 0
    _propagated = False
    _isBinary = False
    _firstFrame = True
    _whole: list[bytes] | None = None

    # -- messages in, relayed as they come --

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)  # type: ignore[misc]
        self.message_data = None
        self.bridge.activity()
        self._isBinary = isBinary
        self._firstFrame = True
        self._whole: list[bytes] | None = None

    def onMessageFrameBegin(self, length: int) -> None:
        # The base class checks max_message_bytes before any payload.
        super().onMessageFrameBegin(length)  # type: ignore[misc]
        if self.failedByMe:  # type: ignore[attr-defined]
            if self.wasMaxMessagePayloadSizeExceeded:  # type: ignore[attr-defined]
                self.bridge.tooBig(self)
            return
        other = self.other
        if other is None or not other.isOpen():
            return
        first, self._firstFrame = self._firstFrame, False
        if first and self.current_frame.fin and length <= _WHOLE_LIMIT:  # type: ignore[attr-defined]
            # A small message in one frame goes on as one frame.
            self._whole = []
            return
        if first:
            other.beginMessage(self._isBinary)
        other._sendingFrame = length
        other.beginMessageFrame(length)
        if length == 0:
            other.sendMessageFrameData(b"")

    def onMessageFrameData(self, payload: bytes) -> None:
        if self.failedByMe:  # type: ignore[attr-defined]
            return
        whole = self._whole
        if whole is not None:
            whole.append(payload)
            return
        if not payload:
            # A zero-length frame was sent whole when it began; Autobahn
            # reports its (empty) payload as well.
            return
        other = self.other
        if other is not None and other.isOpen():
            other._sendingFrame -= len(payload)
            other.sendMessageFrameData(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        if self.failedByMe:  # type: ignore[attr-defined]
            return
        other = self.other
        if other is None or not other.isOpen():
            return
        whole, self._whole = self._whole, None
        if whole is not None:
            other.sendMessage(b"".join(whole), self._isBinary)
        else:
            other.endMessage()
        self.bridge.relayed(self.fromBackend)

    # -- closes --

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        result = super().onCloseFrame(code, reasonRaw)  # type: ignore[misc]
        if not self._propagated:
            self._propagated = True
            self.bridge.legClosed(
                self,
                self.remoteCloseCode,  # type: ignore[attr-defined]
                self.remoteCloseReason,  # type: ignore[attr-defined]
                clean=True,
            )
        return result  # type: ignore[no-any-return]

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn leaves this timer behind when the connection is lost.
        timer = getattr(self, "closeHandshakeTimeoutCall", None)
        if timer is not None:
            timer.cancel()
            self.closeHandshakeTimeoutCall = None
        if not self._propagated:
            self._propagated = True
            self.bridge.legClosed(self, code, reason, clean=False)
        self.bridge.legGone(self)

    def isOpen(self) -> bool:
        return self.state == self.STATE_OPEN  # type: ignore[attr-defined,no-any-return]

    def closeWith(self, code: int | None, reason: str | None) -> None:
        """Close this leg with C{code} (None: no code), or drop it mid-frame."""
        if not self.isOpen():
            if self.state != self.STATE_CLOSED:  # type: ignore[attr-defined]
                self.dropConnection(abort=True)  # type: ignore[attr-defined]
            return
        if self._sendingFrame > 0:
            # A close frame cannot go inside a frame's payload: drop.
            self.dropConnection(abort=True)  # type: ignore[attr-defined]
            return
        self._propagated = True
        encoded = reason.encode("utf-8")[:123] if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=encoded if code else None)  # type: ignore[attr-defined]


class ClientLeg(Leg, WebSocketServerProtocol):  # type: ignore[misc]
    """The leg to the client: the proxy is its server."""

    fromBackend = False

    def onConnect(self, request: ConnectionRequest) -> Any:
        """Accept with what the backend chose (and the sticky cookie, if due)."""
        return self.bridge.acceptance()

    def onOpen(self) -> None:
        self.bridge.clientOpen()


class BackendLeg(Leg, WebSocketClientProtocol):  # type: ignore[misc]
    """The leg to the backend: the proxy is its client."""

    fromBackend = True
    refusedStatus: int | None = None
    lostReason: Failure | None = None

    def onConnecting(self, transport_details: Any) -> ConnectingRequest:
        return self.bridge.connectingRequest()

    def onOpen(self) -> None:
        self.bridge.backendOpen(self)

    failedHandshake: str | None = None

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


def legFactories(
    settings: WebSocketSettings, serverName: str | None, handshakeTimeout: float
) -> tuple[WebSocketServerFactory, WebSocketClientFactory]:
    """The Autobahn factories the legs of every bridge share."""
    server = WebSocketServerFactory(server=serverName)
    client = WebSocketClientFactory(useragent=None)
    for factory in (server, client):
        factory.setProtocolOptions(
            maxMessagePayloadSize=settings.max_message_bytes,
            maxFramePayloadSize=0,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_interval,
            openHandshakeTimeout=handshakeTimeout,
            closeHandshakeTimeout=5,
            failByDrop=False,
            echoCloseCodeReason=True,
            tcpNoDelay=True,
        )
    return server, client


class OneLeg(Factory):
    """Connects one backend leg (which keeps its Autobahn factory), quietly."""

    noisy = False

    def __init__(self, leg: BackendLeg) -> None:
        self._leg = leg

    def buildProtocol(self, addr: Any) -> BackendLeg:
        return self._leg
