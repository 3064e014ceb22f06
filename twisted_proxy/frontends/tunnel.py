"""
An open CONNECT tunnel: the client's connection and the destination's,
bytes relayed both ways as they come.

The two transports pause each other (L{Pipe}), so a slow reader on either
side holds at most its socket buffers in the proxy. A side that ends its
sending (a TCP half-close, C{FIN}) has that passed on as a half-close of the
other side's sending where that transport can (plain TCP), or as a close
once everything is written where it cannot (TLS to the client); the other
direction goes on until it ends too. A side that is lost (reset, or closed
whole) has the other closed once what was written to it is sent. A tunnel
that moves no byte either way for C{idle_timeout} is closed.

A tunnel joins its listener's live connections as C{"tunnel"}: a reload
leaves it open, a graceful stop lets it run until the grace period ends and
then cuts it. When both connections are gone its access-log line is written:
the CONNECT request, 200, the bytes sent to the client and received from it,
and how long the tunnel was open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy.core.logformat import END_IDLE, END_SHUTDOWN_GRACE
from twisted_proxy.frontends.pipe import Pipe, StreamingTransport

__all__ = ["CONNECTED", "Tunnel", "TunnelSide"]

CONNECTED = b"HTTP/1.1 200 Connection established\r\n\r\n"
"""What the client is answered once its destination accepted."""

_log = Logger()


def _nothing(tunnel: Tunnel) -> None:
    """What an ended tunnel calls again: nothing."""


@implementer(IHalfCloseableProtocol)
class TunnelSide(Protocol):
    """One of a tunnel's two connections."""

    transport: Any

    def __init__(self, tunnel: Tunnel, isClient: bool) -> None:
        self.tunnel = tunnel
        self.isClient = isClient
        self.reading = True
        """Whether this side may still send (no FIN from it yet)."""
        self.writing = True
        """Whether this side may still be written to."""
        self.gone = False

    def dataReceived(self, data: bytes) -> None:
        self.tunnel.relay(self, data)

    def readConnectionLost(self) -> None:
        self.tunnel.sendingEnded(self)

    def writeConnectionLost(self) -> None:
        # Our own half-close took effect; nothing to do.
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.tunnel.sideLost(self)


class Tunnel:
    """
    A client and its destination, joined. C{request} is the CONNECT request
    (for the access log); C{site} its listener's site; C{destination} the
    address connected to, as logged.
    """

    busy = True

    def __init__(
        self,
        reactor: IReactorTime,
        idleTimeout: float,
        client: str,
        destination: str,
        ended: Callable[[Tunnel], object],
        protocolName: str = "tunnel",
    ) -> None:
        self._reactor = reactor
        self._idleTimeout = idleTimeout
        self._ended = ended
        self.protocolName = protocolName
        """What the status page and the listener's registry call it."""
        self.clientName = client
        self.destination = destination
        self.startTime = reactor.seconds()
        self.client = TunnelSide(self, True)
        self.server = TunnelSide(self, False)
        self.up = 0
        """Bytes from the client, relayed to the destination."""
        self.down = 0
        """Bytes from the destination, relayed to the client."""
        self._lastActive = self.startTime
        self._idle: IDelayedCall | None = None
        self.endReason: str | None = None
        """Why the proxy ended it (an C{END_*} name); None: its sides did."""
        self._connections: Any = None
        self._over = False

    # -- opening --

    def open(self, connections: Any, early: bytes = b"") -> None:
        """
        Both connections are this tunnel's: join the listener's live
        C{connections}, pair the two, and relay, C{early} (what the client
        sent before) first.
        """
        client, server = self.client.transport, self.server.transport
        self._connections = connections
        connections.add(self)
        Pipe(cast(StreamingTransport, client), cast(StreamingTransport, server)).open()
        self._idle = self._reactor.callLater(self._idleTimeout, self._checkIdle)
        if early:
            self.relay(self.client, early)

    # -- relaying --

    def relay(self, side: TunnelSide, data: bytes) -> None:
        """Bytes from C{side}, written to the other."""
        other = self.server if side.isClient else self.client
        if other.gone or not other.writing:
            return
        if side.isClient:
            self.up += len(data)
        else:
            self.down += len(data)
        self._lastActive = self._reactor.seconds()
        other.transport.write(data)

    def sendingEnded(self, side: TunnelSide) -> None:
        """C{side} sent its FIN: the other side's sending from us ends too."""
        side.reading = False
        other = self.server if side.isClient else self.client
        if not other.gone and other.writing:
            other.writing = False
            transport = other.transport
            halfCloses = IHalfCloseableDescriptor.providedBy(transport)
            if halfCloses:
                transport.loseWriteConnection()
            else:
                # TLS has no half-close: close once what is written is sent.
                transport.loseConnection()
        self._closeIfDone(side)
        self._closeIfDone(other)

    def _closeIfDone(self, side: TunnelSide) -> None:
        if not side.gone and not side.reading and not side.writing:
            side.transport.loseConnection()

    def sideLost(self, side: TunnelSide) -> None:
        """C{side}'s connection is gone: close the other once it is written."""
        side.gone = True
        side.reading = side.writing = False
        other = self.server if side.isClient else self.client
        if not other.gone:
            other.writing = False
            transport = other.transport
            if transport is not None:
                transport.loseConnection()
            return
        self._end()

    # -- timing out, and the listener stopping --

    def _checkIdle(self) -> None:
        self._idle = None
        quiet = self._reactor.seconds() - self._lastActive
        if quiet < self._idleTimeout:
            self._idle = self._reactor.callLater(
                self._idleTimeout - quiet, self._checkIdle
            )
            return
        _log.info(
            "{kind} {client} -> {destination} idle for {seconds:.0f} s, closed",
            kind=self.protocolName,
            client=self.clientName,
            destination=self.destination,
            seconds=quiet,
        )
        self.endReason = END_IDLE
        self.abortConnection()

    def drain(self) -> None:
        """Graceful stop: an open tunnel runs on until the grace period ends."""

    def abortConnection(self) -> None:
        """Cut both connections now."""
        if self.endReason is None:
            self.endReason = END_SHUTDOWN_GRACE
        for side in (self.client, self.server):
            if not side.gone and side.transport is not None:
                side.transport.abortConnection()

    def cutShort(self, reason: str) -> None:
        """The tunnel is about to be cut for C{reason}: its log line says so."""
        if self.endReason is None:
            self.endReason = reason

    # -- the end --

    def _end(self) -> None:
        if self._over:
            return
        self._over = True
        idle, self._idle = self._idle, None
        if idle is not None and idle.active():
            idle.cancel()
        _log.info(
            "{kind} {client} -> {destination} closed after {seconds:.1f} s:"
            " {up} bytes up, {down} bytes down{how}",
            kind=self.protocolName,
            client=self.clientName,
            destination=self.destination,
            seconds=self._reactor.seconds() - self.startTime,
            up=self.up,
            down=self.down,
            how="" if self.endReason is None else f" ({self.endReason})",
        )
        ended, self._ended = self._ended, _nothing
        ended(self)
        # Last: leaving the registry may end a graceful stop, which closes
        # the access log.
        connections, self._connections = self._connections, None
        if connections is not None:
            connections.remove(self)
