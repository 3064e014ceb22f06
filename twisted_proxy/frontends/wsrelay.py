"""
An open WebSocket relayed between the client's connection and the backend's
once both handshakes are done: each side's bytes read frame by frame from
the headers (L{FrameReader}) and written to the other side as they came,
payload and masks untouched, so a message costs a header's reading (and a
UTF-8 check for text), not a decoding and an encoding.

The relay keeps what a WebSocket endpoint owes its peer: a frame against
the rules, text that is not UTF-8, or a message over C{max_message_bytes},
fails that side with 1002 (1007, 1009) and closes the other; each side's
close is answered on that side and carried to the other (L{closeForPeer});
a side that ends without a close gets the other closed with 1011 (the
backend went away) or 1001 (the client did). Pings either way go through
and their pongs come back; with C{ping_interval} the relay pings each side
itself and drops one that does not answer in time. C{idle_timeout} closes
both sides with 1001 when no data frame went either way for that long.
Frames of its own are written only between the other side's frames, never
inside one.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy._twisted_internals import closeFirst
from twisted_proxy.config.model import WebSocketSettings
from twisted_proxy.core.wsframes import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Control,
    FrameReader,
    closePayload,
    encodeFrame,
    readClose,
)
from twisted_proxy.core.wsrules import CLOSE_GOING_AWAY, CLOSE_TOO_BIG, closeForPeer

__all__ = ["FrameRelay", "RelayOwner", "RelaySide"]

# Seconds a side has to answer a close before its connection is dropped.
CLOSE_TIMEOUT = 5.0


class RelayOwner(Protocol):
    """What the relay tells the bridge that owns it."""

    def relayed(self, fromBackend: bool, count: int) -> None:
        """C{count} messages went on, from the backend or from the client."""

    def refused(self, fromBackend: bool, code: int, reason: str) -> None:
        """A side sent a frame against the rules: it is closed with C{code}."""

    def backendEnded(self) -> None:
        """The backend's connection ended without a close."""

    def relayGone(self) -> None:
        """Both connections are closed."""


@implementer(IProtocol)
class RelaySide:
    """One side's connection: what it sends is read and written to the other."""

    __slots__ = (
        "closeReceived",
        "closeSent",
        "closeTimer",
        "connected",
        "counted",
        "failWith",
        "fromBackend",
        "gone",
        "peer",
        "pingOut",
        "reader",
        "relay",
        "transport",
    )

    def __init__(self, relay: FrameRelay, reader: FrameReader, fromBackend: bool):
        self.transport: Any = None
        self.connected = 0
        self.relay = relay
        self.reader = reader
        self.peer: RelaySide = self
        self.fromBackend = fromBackend
        self.closeSent = False
        self.closeReceived = False
        self.gone = False
        # The payload of this side's unanswered ping from the relay.
        self.pingOut: bytes | None = None
        self.closeTimer: IDelayedCall | None = None
        self.counted = 0
        # Why this side broke the rules, once it has: its close says so.
        self.failWith: tuple[int, str] | None = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.connected = 1

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        reader = self.reader
        frames = reader.frames
        out = reader.feed(data)
        relay = self.relay
        peer = self.peer
        for item in out:
            if item.__class__ is bytes:
                if not peer.closeSent:
                    peer.transport.write(item)
            else:
                relay.control(self, item)  # type: ignore[arg-type]
        if reader.frames != frames:
            relay.lastActive = relay.clock.seconds()
            messages = reader.messages
            if messages != self.counted:
                relay.owner.relayed(self.fromBackend, messages - self.counted)
                self.counted = messages
        failure = reader.failure
        if failure is not None:
            reader.failure = None
            relay.broken(self, failure)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.relay.lost(self)

    def send(self, opcode: int, payload: bytes) -> None:
        """A frame of the relay's own (masked to the backend, as from a client)."""
        mask = os.urandom(4) if self.fromBackend else None
        self.transport.write(encodeFrame(opcode, payload, mask))


class FrameRelay:
    """Both sides of one WebSocket, after both handshakes."""

    __slots__ = (
        "_idle",
        "_ping",
        "_settings",
        "backend",
        "client",
        "clock",
        "lastActive",
        "owner",
    )

    def __init__(
        self, owner: RelayOwner, clock: IReactorTime, settings: WebSocketSettings
    ) -> None:
        self.owner = owner
        self.clock = clock
        self._settings = settings
        limit = settings.max_message_bytes
        self.client = RelaySide(self, FrameReader(True, limit), False)
        self.backend = RelaySide(self, FrameReader(False, limit), True)
        self.client.peer = self.backend
        self.backend.peer = self.client
        self.lastActive = clock.seconds()
        self._idle: IDelayedCall | None = None
        self._ping: IDelayedCall | None = None

    def start(self) -> None:
        """Both sides are connected: start the idle and ping timers."""
        settings = self._settings
        if settings.idle_timeout:
            self._idle = self.clock.callLater(settings.idle_timeout, self._idleCheck)
        if settings.ping_interval:
            self._ping = self.clock.callLater(settings.ping_interval, self._pingTick)

    # -- what the sides report --

    def control(self, side: RelaySide, frame: Control) -> None:
        """A whole control frame from C{side}."""
        peer = side.peer
        opcode = frame.opcode
        if opcode == OP_CLOSE:
            code, reason, problem = readClose(frame.payload)
            if problem is not None:
                if side.closeSent:
                    side.closeReceived = True
                    self._closed(side)
                else:
                    self.broken(side, problem)
                return
            side.closeReceived = True
            if side.closeSent:
                # The answer to the relay's own close.
                self._closed(side)
            else:
                self.sendClose(side, code, reason)
            self.sendClose(peer, *closeForPeer(code, reason, True, side.fromBackend))
            return
        if opcode == OP_PONG and frame.payload == side.pingOut:
            side.pingOut = None
            return
        if not peer.closeSent and not peer.gone:
            peer.transport.write(frame.raw)

    def broken(self, side: RelaySide, failure: tuple[int, str]) -> None:
        """
        C{side} sent a frame against the rules: the other side is closed
        first, and C{side} once that is done, so what the other side sent
        before (an echo on its way) still reaches it.
        """
        code, reason = failure
        if side.reader.closed:
            # A malformed close: the side has closed all the same.
            side.closeReceived = True
        side.failWith = failure
        self.owner.refused(side.fromBackend, code, reason)
        peer = side.peer
        if code == CLOSE_TOO_BIG:
            self.sendClose(peer, CLOSE_TOO_BIG, reason)
        else:
            self.sendClose(peer, *closeForPeer(None, None, False, side.fromBackend))
        if peer.gone or peer.closeReceived or not peer.closeSent:
            self.sendClose(side, code, reason)

    def lost(self, side: RelaySide) -> None:
        """C{side}'s connection is closed."""
        side.gone = True
        timer, side.closeTimer = side.closeTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        peer = side.peer
        ended = not side.closeReceived and not side.closeSent
        if ended and side.fromBackend and not peer.gone:
            self.owner.backendEnded()
        self.sendClose(peer, *closeForPeer(None, None, False, side.fromBackend))
        if peer.gone:
            for call in (self._idle, self._ping):
                if call is not None and call.active():
                    call.cancel()
            self._idle = self._ping = None
            self.owner.relayGone()

    # -- closing --

    def sendClose(self, side: RelaySide, code: int | None, reason: str | None) -> None:
        """
        Close C{side} with C{code} (None: a close without one): its answer is
        awaited for L{CLOSE_TIMEOUT} seconds unless it closed first. A side
        in the middle of one of the other side's frames is dropped instead.
        """
        if side.closeSent or side.gone:
            return
        if side.failWith is not None:
            code, reason = side.failWith
        side.closeSent = True
        if not side.peer.reader.atBoundary:
            side.transport.abortConnection()
            return
        side.send(OP_CLOSE, closePayload(code, reason))
        if side.closeReceived:
            self._closed(side)
        else:
            side.closeTimer = self.clock.callLater(CLOSE_TIMEOUT, self._noAnswer, side)

    def _closed(self, side: RelaySide) -> None:
        """
        Both closes went on C{side}: its connection ends. The client's is
        closed at once, the relay being its server (RFC 6455 7.1.1), even
        under TLS; the backend's as soon as it is sent, if the backend has
        not closed it first.
        """
        timer, side.closeTimer = side.closeTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        if side.fromBackend:
            side.transport.loseConnection()
        else:
            closeFirst(side.transport)

    def _noAnswer(self, side: RelaySide) -> None:
        side.closeTimer = None
        if not side.gone:
            side.transport.abortConnection()

    def closeBoth(self, code: int, reason: str) -> None:
        """Close both sides with C{code} (idle, a graceful stop)."""
        self.sendClose(self.client, code, reason)
        self.sendClose(self.backend, code, reason)

    def abortConnection(self) -> None:
        """Cut both connections now."""
        for side in (self.client, self.backend):
            if not side.gone:
                side.transport.abortConnection()

    # -- timers --

    def _idleCheck(self) -> None:
        self._idle = None
        due = self.lastActive + self._settings.idle_timeout
        now = self.clock.seconds()
        if due > now:
            self._idle = self.clock.callLater(due - now, self._idleCheck)
            return
        self.closeBoth(CLOSE_GOING_AWAY, "idle")

    def _pingTick(self) -> None:
        self._ping = None
        for side in (self.client, self.backend):
            if side.gone or side.closeSent:
                continue
            if side.pingOut is not None:
                # The last ping went unanswered for a whole interval.
                side.transport.abortConnection()
                continue
            if side.peer.reader.atBoundary:
                side.pingOut = os.urandom(8)
                side.send(OP_PING, side.pingOut)
        if not (self.client.gone and self.backend.gone):
            self._ping = self.clock.callLater(
                self._settings.ping_interval, self._pingTick
            )
