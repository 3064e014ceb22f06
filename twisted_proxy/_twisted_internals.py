"""
Every touch of Twisted's private attributes, in one place.

Streaming a body into a twisted.web C{Site} before it is complete needs state
that C{HTTPChannel} keeps privately; writing without a needless poll needs
the TCP transport's buffer state; reopening twistd's log file and exiting 0
after SIGTERM need what twistd keeps to itself; the HTTP/2 front end builds
on C{twisted.web._http2}, a private module, through L{H2ConnectionBase}.
Should a Twisted upgrade rename any of it, this module (and its tests) is
where it breaks, loudly.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from typing import Any

import priority
from OpenSSL.SSL import WantReadError as SSLWantReadError
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import (
    BufferingTLSTransport,
    TLSMemoryBIOFactory,
    TLSMemoryBIOProtocol,
)
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.web._http2 import _END_STREAM_SENTINEL, H2Connection
from twisted.web.http import HTTPChannel

if sys.platform == "linux":
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
else:  # pragma: no cover - the send queue is not asked for elsewhere
    _OUTQ = None


# The send loop's most frames, and DATA bytes, in one reactor turn.
SEND_BATCH = 16
SEND_BATCH_BYTES = 128 * 1024


def pendingRequestLine(channel: HTTPChannel) -> tuple[bytes, bytes, bytes]:
    """
    The method, request-target and version of the request whose head the
    channel has just read (they become public only once the body is in).
    """
    return channel._command, channel._path, channel._version  # type: ignore[attr-defined]


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data}, trying the socket at once when nothing is queued before it.

    A plain C{transport.write} queues the bytes and asks the reactor to poll
    for writability: two C{epoll_ctl} calls and a C{send} a loop later, for
    every response. On an idle TCP connection one C{send} usually takes it all;
    whatever it does not take is queued as usual (producers, pausing and error
    reporting unchanged). A listener's TLS connection (L{DirectTLSProtocol})
    makes its record at once and sends it the same way; other transports are
    written normally.
    """
    if idleTCP(transport):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent >= 0:
            if sent == len(data):
                return
            data = data[sent:]
    elif isinstance(transport, DirectTLSProtocol):
        transport.writeNow(data)
        return
    transport.write(data)


def idleTCP(transport: Any) -> bool:
    """
    Whether C{transport} is a plain TCP connection, open, with nothing
    queued to send: bytes may go to its socket directly, in order.
    """
    return (
        isinstance(transport, tcp.Connection)
        and bool(transport.connected)
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataBuffer
        and len(transport.dataBuffer) == transport.offset
    )


def closeFirst(transport: Any) -> None:
    """
    Close C{transport} once what was written to it is sent, as the side that
    closes first (a WebSocket's server after the closing handshake). Under
    TLS, Twisted sends its close_notify and then waits for the peer's before
    it closes the TCP connection, and a WebSocket client waits for the TCP
    connection to close before it answers: each waits for the other until a
    timeout. Here the TCP connection is closed after the close_notify without
    waiting for the peer's, as TLS 1.3 allows (RFC 8446 6.1) and nginx does.
    """
    transport.loseConnection()
    if isinstance(transport, TLSMemoryBIOProtocol):
        inner = transport.transport
        if inner is not None and not transport._appSendBuffer:
            inner.loseConnection()


class DirectTLSProtocol(BufferingTLSTransport):
    """
    Twisted's TLS server connection, with its records sent at once.

    C{BufferingTLSTransport} holds every write for a reactor turn (so many
    small writes make one record), then the TCP transport waits another turn
    to send the record: two turns, a timer and two C{epoll_ctl} calls for each
    HTTP/1.1 response, which the channel already writes in one piece. Here a
    record goes to the socket as soon as it is made (L{sendNow}), and
    L{writeNow} (which L{sendNow} uses) skips the holding for a write that is
    whole already; other writes (HTTP/2's frames) are still gathered for a
    turn.
    """

    def makeConnection(self, transport: Any) -> None:
        if not self._connectWrapped:
            super().makeConnection(transport)
            return
        # As TLSMemoryBIOProtocol.makeConnection, less its loop declaring the
        # transport's interfaces one by one (each declaration replacing the
        # one before, ten zope calls a connection): ProtocolWrapper's
        # makeConnection declares them all at once, which is what stands.
        factory = self.factory
        # Named _creatorCallable since Twisted 25.5's _createConnection.
        create = getattr(factory, "_creatorCallable", None)
        if create is None:
            create = factory._createConnection  # type: ignore[attr-defined]
        self._tlsConnection = create(self)
        self._appSendBuffer = []
        ProtocolWrapper.makeConnection(self, transport)
        self._checkHandshakeStatus()

    def _flushSendBIO(self) -> None:
        try:
            data = self._tlsConnection.bio_read(2**15)
        except SSLWantReadError:
            # Nothing in the send BIO right now.
            return
        sendNow(self.transport, data)

    def writeNow(self, data: bytes) -> None:
        """Write C{data} now, after anything held before it."""
        self._aggregator.flush()
        TLSMemoryBIOProtocol.write(self, data)


class DirectTLSFactory(TLSMemoryBIOFactory):
    """A C{TLSMemoryBIOFactory} whose connections are L{DirectTLSProtocol}s."""

    protocol = DirectTLSProtocol


def pendingWriteBytes(transport: Any) -> int | None:
    """
    The bytes written to C{transport} that the peer has not taken yet: in
    the transport's own buffer (for TLS, the TCP transport's under it) and,
    where the system tells (Linux's TIOCOUTQ), in the socket's send queue
    not yet acknowledged. None when the transport does not tell. A peer that
    takes none of what it was sent shows the same count twice.
    """
    if hasattr(transport, "wrappedProtocol") and hasattr(transport, "transport"):
        transport = transport.transport
    if not isinstance(transport, tcp.Connection):
        return None
    held: int = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    if _OUTQ is not None:
        try:
            raw = fcntl.ioctl(transport.socket.fileno(), _OUTQ, b"\0\0\0\0")
        except (OSError, ValueError):
            pass
        else:
            held += struct.unpack("i", raw)[0]
    return held


def replaceProtocol(transport: Any, protocol: Any) -> None:
    """
    Make C{transport} deliver to C{protocol} from now on (a WebSocket bridge
    taking over an HTTP connection): a TLS transport's wrapped protocol, or a
    TCP connection's own protocol.
    """
    if hasattr(transport, "wrappedProtocol"):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol


def acceptOneAtATime(port: Any) -> None:
    """
    Make a listening TCP port accept one connection each time it is ready,
    not the up to 100 Twisted's C{Port.doRead} takes at once (its private
    C{numberAccepts}): when worker processes share the socket, each wakes
    for a new connection and the least busy one takes it, so a burst of
    connections is spread over the processes instead of going to whichever
    woke first.
    """
    read = port.doRead

    def doRead() -> Any:
        port.numberAccepts = 1
        return read()

    port.numberAccepts = 1
    port.doRead = doRead


def twistdLogFile(handler: object) -> LogFile | None:
    """
    The log file twistd writes to, found in the SIGUSR1 handler twistd set up
    for it (a closure over the file), or C{None} when C{handler} is not that.
    """
    cells = getattr(handler, "__closure__", None) or ()
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, LogFile):
            return value
    return None


def forgetExitSignal(reactor: Any) -> None:
    """
    Make twistd exit with status 0 after a stop that SIGTERM or SIGINT asked
    for: it re-raises the signal on its way out unless the reactor forgets it.
    """
    if getattr(reactor, "_exitSignal", None) is not None:
        reactor._exitSignal = None


class H2ConnectionBase(H2Connection):
    """
    Twisted's HTTP/2 connection (C{twisted.web._http2.H2Connection}), with
    the private methods that Twisted calls and a proxy must change reached
    through public ones, and the private state a proxy reads or wakes behind
    public methods.

    Twisted calls C{_requestReceived} and the like; each hands over to the
    public method named in its place (L{headersReceived}, L{dataFrameReceived},
    L{streamEnded}, L{streamReset}, L{streamDone}, L{sendPrioritisedData},
    L{lostConnection}), whose default here is Twisted's own behaviour:
    override those, and call them on C{super()} for Twisted's.
    """

    # -- Twisted calls these: handed to the public methods --

    def _requestReceived(self, event: Any) -> None:
        self.headersReceived(event)

    def _requestDataReceived(self, event: Any) -> None:
        self.dataFrameReceived(event)

    def _requestEnded(self, event: Any) -> None:
        self.streamEnded(event)

    def _requestAborted(self, event: Any) -> None:
        self.streamReset(event)

    def _requestDone(self, streamID: int) -> None:
        self.streamDone(streamID)

    def _sendPrioritisedData(self, *args: object) -> None:
        self.sendPrioritisedData(*args)

    def connectionLost(
        self, reason: Failure = connectionDone, _cancelTimeouts: bool = True
    ) -> None:
        self.lostConnection(reason, byTwisted=not _cancelTimeouts)

    # -- Twisted's behaviour, under public names --

    def headersReceived(self, event: Any) -> None:
        """A HEADERS frame opened a stream (h2's C{RequestReceived})."""
        H2Connection._requestReceived(self, event)

    def dataFrameReceived(self, event: Any) -> None:
        """A DATA frame arrived for a stream (h2's C{DataReceived})."""
        H2Connection._requestDataReceived(self, event)

    def streamEnded(self, event: Any) -> None:
        """The client ended a stream's request (h2's C{StreamEnded})."""
        H2Connection._requestEnded(self, event)

    def streamReset(self, event: Any) -> None:
        """The client reset a stream (h2's C{StreamReset})."""
        H2Connection._requestAborted(self, event)

    def streamDone(self, streamID: int) -> None:
        """Stream C{streamID}'s response is done: Twisted forgets the stream."""
        H2Connection._requestDone(self, streamID)

    def sendPrioritisedData(self, *args: object) -> None:
        """
        One turn of the send loop: DATA frames (and stream ends) out, by
        priority, as Twisted's loop sends them, but up to L{SEND_BATCH}
        frames (or L{SEND_BATCH_BYTES}) in one turn and all of them in one
        write, where Twisted's sends one frame a turn and schedules the next:
        a small response's DATA and its end go out together with its
        HEADERS. The loop waits, as Twisted's does, while no stream can send
        and while the transport is paused.
        """
        if not self._stillProducing:
            return
        conn = self.conn
        queues = self._outboundStreamQueues
        frames = 0
        written = 0
        self.resetTimeout()
        while True:
            try:
                streamID = next(self.priority)
            except priority.DeadlockError:
                # Nothing can be sent: wait until a stream has something.
                self._flushFrames()
                if self._stillProducing and self._sendingDeferred is None:
                    self._sendingDeferred = Deferred()
                    self._sendingDeferred.addCallback(self._sendPrioritisedData)
                return
            if self._consumerBlocked is not None:
                self._flushFrames()
                self._consumerBlocked.addCallback(self._sendPrioritisedData)
                return
            queue = queues[streamID]
            frameData = queue.popleft()
            if frameData is _END_STREAM_SENTINEL:
                conn.end_stream(streamID)
                # Twisted forgets the stream (and may write control frames,
                # after what is already in h2's buffer).
                self._requestDone(streamID)
            else:
                window = conn.local_flow_control_window(streamID)
                maxFrameSize = min(conn.max_outbound_frame_size, window)
                if len(frameData) > maxFrameSize:
                    queue.appendleft(frameData[maxFrameSize:])
                    frameData = frameData[:maxFrameSize]
                if frameData:
                    conn.send_data(streamID, frameData)
                    written += len(frameData)
                if not queue:
                    self.priority.block(streamID)
                if self.remainingOutboundWindow(streamID) <= 0:
                    self.streams[streamID].flowControlBlocked()
            frames += 1
            if not self._stillProducing:
                return
            if frames >= SEND_BATCH or written >= SEND_BATCH_BYTES:
                self._flushFrames()
                self._reactor.callLater(0, self._sendPrioritisedData)
                return

    def _flushFrames(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def lostConnection(self, reason: Failure, byTwisted: bool = False) -> None:
        """
        The connection is gone; C{byTwisted}: Twisted tearing it down itself
        (the peer's GOAWAY, a protocol error) after asking the transport to
        close, before the transport says it is lost.
        """
        H2Connection.connectionLost(self, reason, _cancelTimeouts=not byTwisted)

    # -- private state, read or woken --

    @property
    def h2Log(self) -> Logger:
        """The logger Twisted's HTTP/2 connection logs with, bound to this one."""
        log: Logger = self._log
        return log

    def writeControlData(self) -> bool:
        """
        Send the frames h2 has ready (settings, resets, GOAWAY); False when
        the connection had to be closed (too much control data buffered).
        """
        return bool(self._tryToWriteControlData())

    def send100Continue(self, streamID: int) -> None:
        """Send C{100 Continue} on stream C{streamID}."""
        self._send100Continue(streamID)

    def queuedChunks(self, streamID: int) -> Iterable[object]:
        """What is queued to be sent on stream C{streamID}: bytes, and markers."""
        queue: Iterable[object] = self._outboundStreamQueues.get(streamID, ())
        return queue

    def allQueuedChunks(self) -> Iterable[object]:
        """What is queued to be sent on every stream: bytes, and markers."""
        for queue in self._outboundStreamQueues.values():
            yield from queue

    def wakeSendLoop(self) -> None:
        """
        Have the send loop run again, when it sleeps for want of a stream
        able to send (a stream's window has opened meanwhile).
        """
        waiting, self._sendingDeferred = self._sendingDeferred, None
        if waiting is not None:
            waiting.callback(None)
