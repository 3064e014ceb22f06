"""
HTTP/2 to clients, on the TLS listeners whose C{alpn} lists C{"h2"}.

twisted.web turns HTTP/2 on by itself whenever the C{h2} package is
installed; here it is opt-in per listener. L{NegotiatingFactory} takes the
place of the listener's site (an HTTP/1.1 factory) under
C{TLSMemoryBIOFactory}: each connection starts as the listener's HTTP/1.1
channel (its header timeout
covers the handshake), and once the handshake is done TLS is handed straight
to the protocol ALPN chose: the same channel for HTTP/1.1, an
L{H2ProxyConnection} for C{h2}. Nothing sits between TLS and either of them
afterwards.

L{H2ProxyConnection} is Twisted's C{H2Connection}; its requests are
L{H2Request}s (L{twisted_proxy.frontends.http2request}), which stream to the
listener's resource as the proxy's own requests do (routed once the head is
in, body passed on as it arrives, the listener's response headers, access log
and limits), and reach HTTP/1.1 backends. Flow control is HTTP/1.1's, in HTTP/2 terms:

 - upload: a request pauses its stream when the backend cannot take more, and
   no WINDOW_UPDATE goes out for it until the backend has taken the data: at
   most one stream window (64 KiB) is held per stream;
 - download: the backend is paused when the client's window is used up, or
   when a stream has L{STREAM_BUFFER} bytes waiting for the TLS connection, so
   that what the proxy holds does not depend on the windows a client
   advertises.

C{twisted.web._http2} is private to Twisted: this module reaches it only
through L{twisted_proxy._twisted_internals.H2ConnectionBase}, whose public
methods stand for the private ones. What L{H2ProxyConnection} changes of
them is each given with its reason; the tests in
C{tests/unit/test_h2_server.py} run the real class, so a Twisted upgrade that
changes them fails there.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IProtocol,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_proxy._twisted_internals import H2ConnectionBase
from twisted_proxy.core.logformat import END_SEND_TIMEOUT
from twisted_proxy.core.streamorder import RoundRobinStreams
from twisted_proxy.frontends.http2request import H2Request
from twisted_proxy.frontends.listener import (
    IListenerConnection,
    ListenerSite,
    SendTimeout,
)

STREAM_BUFFER = 65536
"""Response bytes queued on one stream before its backend is paused."""

# Each stream may hold a full window (64 KiB) of upload while its backend is
# slow; the connection's window is that much per concurrent stream, so that
# one waiting upload does not stall the others on the connection.
_CONNECTION_WINDOW = 100 * 65535


@implementer(IListenerConnection)
class H2ProxyConnection(H2ConnectionBase):
    """
    Twisted's HTTP/2 connection serving one listener's requests as
    L{H2Request}s, with what a proxy needs on top: bounded response
    buffering, idle and drain behaviour like the HTTP/1.1 channel's, a clean
    close under TLS, and data arriving for a stream already answered.
    """

    # Twisted's are None until set; these are set at construction.
    site: Any
    factory: Any
    transport: Any
    timeOut: Any

    protocolName = "h2"

    @property
    def busy(self) -> bool:
        """A stream is open."""
        return bool(self.streams)

    def __init__(self, site: ListenerSite) -> None:
        super().__init__(site.reactor)
        # Streams take turns in round robin (see streamorder).
        self.priority = RoundRobinStreams()
        self.site = site
        # twisted.web's Request.finish logs through channel.factory.log().
        self.factory = site
        self.timeOut = site.settings.idle_timeout
        self._requests: dict[int, H2Request] = {}
        # Streams whose producer waits for their queue to drain, and streams
        # with data but no window, taken out of Twisted's send loop.
        self._heldBack: set[int] = set()
        self._noWindow: set[int] = set()
        # send_timeout: streams the client gives no window, and the whole
        # connection while the client takes none of what was written.
        self._stalled: dict[int, IDelayedCall] = {}
        self._sendTimeout = SendTimeout(
            site.reactor, site.settings.send_timeout, self._sendTimedOut
        )
        self._draining = False
        self._closing = False
        self._lost = False
        # The last stream a GOAWAY of ours let through, once one was sent.
        self._lastStreamID: int | None = None

    def requestFactory(self, stream: Any, queued: object = False) -> H2Request:
        """Make the request of a new stream (called by Twisted's H2Stream)."""
        request = H2Request(stream, self)
        self._requests[stream.streamID] = request
        return request

    def callLater(self, period: float, func: Any) -> IDelayedCall:
        """The timeout's clock is the listener's reactor, not the global one."""
        call: IDelayedCall = self.site.reactor.callLater(period, func)
        return call

    # -- IProtocol --

    def connectionMade(self) -> None:
        super().connectionMade()
        self.conn.increment_flow_control_window(_CONNECTION_WINDOW)
        limit = self.site.settings.max_header_bytes
        if limit != self.conn.local_settings.max_header_list_size:
            self.conn.update_settings({SettingCodes.MAX_HEADER_LIST_SIZE: limit})
        self.writeControlData()

    def lostConnection(self, reason: Failure, byTwisted: bool = False) -> None:
        self._lost = True
        if byTwisted and self.transport is not None:
            # Twisted tearing the connection down itself (the peer's GOAWAY, a
            # protocol error) after asking TLS to close: TLS waits for its
            # producer to go first.
            self.transport.unregisterProducer()
        super().lostConnection(reason, byTwisted)
        self._heldBack.clear()
        for streamID in list(self._noWindow):
            self._windowOpen(streamID)
        self._sendTimeout.close()
        if not byTwisted:
            self.site.connections.remove(self)

    def timeoutConnection(self) -> None:
        """
        Idle for C{idle_timeout}: GOAWAY and close, as the HTTP/1.1 channel
        closes between requests. A connection with a stream open is not idle
        (its backend may take its time; a stalled upload has its own timer).
        """
        if self.streams:
            self.setTimeout(self.timeOut)
            return
        self._goAway()

    # -- what the listener's factory asks of its connections --

    def drain(self) -> None:
        """
        Graceful stop: GOAWAY now, so the client opens no more streams; close
        once the streams already open are done.
        """
        if self._draining or self._lost:
            return
        self._draining = True
        if not self.streams:
            self._goAway()
            return
        # h2 refuses to send anything after its own GOAWAY, so this first one
        # is written directly; the final one (h2's) follows the last stream.
        self._lastStreamID = self.conn.highest_inbound_stream_id
        self.writeControlData()
        frame = GoAwayFrame(0, last_stream_id=self._lastStreamID)
        self.transport.write(frame.serialize())

    def loseConnection(self) -> None:
        """Close once what was written is sent."""
        transport = self.transport
        if transport is not None:
            # TLS sends its close alert only once no producer is left.
            transport.unregisterProducer()
            transport.loseConnection()

    def keepsAlive(self) -> bool:
        """Whether the connection stays open for more streams (not draining)."""
        return not (self._draining or self._closing or self._lost)

    def cutShort(self, reason: str) -> None:
        """The connection is about to be cut for C{reason}: its streams say so."""
        for request in list(self._requests.values()):
            request.cutShort(reason)

    def abortConnection(self) -> None:
        """Cut the connection now."""
        if self.transport is not None:
            self.transport.abortConnection()

    def sendContinue(self, streamID: int) -> None:
        """Ask the client for the body of stream C{streamID} (100 Continue)."""
        self.send100Continue(streamID)

    def resetStream(
        self, streamID: int, code: ErrorCodes = ErrorCodes.INTERNAL_ERROR
    ) -> None:
        """Reset one stream, whose response is cut short; the others go on."""
        stream = self.streams.get(streamID)
        if stream is None:
            return
        with suppress(StreamClosedError):
            self.conn.reset_stream(streamID, code)
        stream.connectionLost(Failure(ConnectionLost("stream reset by the proxy")))
        if self.writeControlData():
            self.streamDone(streamID)

    def _goAway(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        last = self._lastStreamID
        if last is None:
            last = self.conn.highest_inbound_stream_id
        self.conn.close_connection(last_stream_id=last)
        self.writeControlData()
        self.loseConnection()

    # -- what Twisted does with h2's events, changed --

    def headersReceived(self, event: Any) -> None:
        # Routing waits until here, not parseCookies(): inside the stream's
        # constructor the stream is not registered yet, and an answer given
        # at once (404, 413) would fail. event.stream_ended also says whether
        # a body follows, which the stream does not tell its request.
        streamID = event.stream_id
        if self._lastStreamID is not None and streamID > self._lastStreamID:
            # Opened after our GOAWAY: refused, which the client may retry.
            self.conn.reset_stream(streamID, ErrorCodes.REFUSED_STREAM)
            return
        super().headersReceived(event)
        request = self._requests.get(streamID)
        if request is not None:
            request.headReceived(endStream=event.stream_ended is not None)

    def dataFrameReceived(self, event: Any) -> None:
        # Twisted raises KeyError (dropping every stream) for DATA on a stream
        # it has finished: a client still uploading after its answer.
        if event.stream_id in self.streams:
            super().dataFrameReceived(event)
        else:
            self.conn.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )

    def streamEnded(self, event: Any) -> None:
        if event.stream_id in self.streams:
            super().streamEnded(event)

    def streamReset(self, event: Any) -> None:
        if event.stream_id in self.streams:
            super().streamReset(event)

    def streamDone(self, streamID: int) -> None:
        super().streamDone(streamID)
        self._requests.pop(streamID, None)
        self._heldBack.discard(streamID)
        self._windowOpen(streamID)
        if self._lost:
            return
        stream = self.conn.streams.get(streamID)
        if stream is not None and not stream.closed:
            # Answered before the client sent all of its body: ask it to stop
            # sending, without error (RFC 9113 8.1), once the answer is out:
            # in the same read, some clients (curl 7.88) take the reset for
            # an error before they have read the answer.
            self.site.reactor.callLater(0, self._stopUpload, streamID)
        if self._draining and not self.streams:
            self._goAway()

    def _stopUpload(self, streamID: int) -> None:
        stream = self.conn.streams.get(streamID)
        if self._lost or self._closing or stream is None or stream.closed:
            return
        self.conn.reset_stream(streamID, ErrorCodes.NO_ERROR)
        self.writeControlData()

    def remainingOutboundWindow(self, streamID: int) -> int:
        # Called by Twisted after each write to a stream and each DATA frame
        # sent. Two changes to its answer:
        #  - a stream with no window left and data queued leaves the send
        #    loop's priority tree until its window opens (see dataReceived):
        #    Twisted keeps picking it, sending nothing, every reactor turn;
        #  - a stream with STREAM_BUFFER bytes queued is out of window too,
        #    whatever window the client gave, so its producer is paused until
        #    the queue drains (see sendPrioritisedData).
        queued = _byteCount(self.queuedChunks(streamID))
        window: int = self.conn.local_flow_control_window(streamID)
        if window <= 0:
            if queued:
                self.priority.block(streamID)
                self._windowShut(streamID)
        elif window > STREAM_BUFFER:
            window = STREAM_BUFFER
            if queued >= STREAM_BUFFER:
                self._heldBack.add(streamID)
        return window - queued

    def sendPrioritisedData(self, *args: object) -> None:
        super().sendPrioritisedData(*args)
        if self._heldBack:
            for streamID in list(self._heldBack):
                stream = self.streams.get(streamID)
                if stream is None:
                    self._heldBack.discard(streamID)
                elif self.remainingOutboundWindow(streamID) > 0:
                    self._heldBack.discard(streamID)
                    stream.windowUpdated()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self._noWindow:
            self._windowsOpened()

    def _windowsOpened(self) -> None:
        # A WINDOW_UPDATE or a SETTINGS frame (a larger initial window) may
        # have given the streams taken out of the send loop room again.
        reopened = False
        for streamID in list(self._noWindow):
            stream = self.streams.get(streamID)
            if stream is None:
                self._windowOpen(streamID)
            elif self.conn.local_flow_control_window(streamID) > 0:
                self._windowOpen(streamID)
                self.priority.unblock(streamID)
                stream.windowUpdated()
                reopened = True
        if reopened:
            self.wakeSendLoop()

    # -- send_timeout: a client that takes none of its responses --

    def _windowShut(self, streamID: int) -> None:
        self._noWindow.add(streamID)
        if streamID not in self._stalled:
            self._stalled[streamID] = self.site.reactor.callLater(
                self.site.settings.send_timeout, self._streamStalled, streamID
            )

    def _windowOpen(self, streamID: int) -> None:
        self._noWindow.discard(streamID)
        timer = self._stalled.pop(streamID, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _streamStalled(self, streamID: int) -> None:
        """A stream's window stayed shut for send_timeout: reset it."""
        self._stalled.pop(streamID, None)
        self.h2Log.info(
            "client gave stream {stream} no window for {seconds:g}s "
            "(send_timeout): resetting it and closing its backend connection",
            stream=streamID,
            seconds=self.site.settings.send_timeout,
        )
        self._noWindow.discard(streamID)
        request = self._requests.get(streamID)
        if request is not None:
            request.cutShort(END_SEND_TIMEOUT)
        self.resetStream(streamID)

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self.transport is not None:
            self._sendTimeout.start(self.transport)

    def resumeProducing(self) -> None:
        self._cancelSendTimer()
        super().resumeProducing()

    def _cancelSendTimer(self) -> None:
        self._sendTimeout.cancel()

    def _sendTimedOut(self) -> None:
        """The client's socket stayed full for send_timeout: let it go."""
        seconds = self.site.settings.send_timeout
        self.h2Log.info(
            "HTTP/2 client took no bytes for {seconds:g}s (send_timeout): "
            "closing its connection and its backends'",
            seconds=seconds,
        )
        self.cutShort(END_SEND_TIMEOUT)
        self.abortConnection()

    def queuedFor(self, streamID: int) -> int:
        """Response bytes of stream C{streamID} waiting for the client."""
        return _byteCount(self.queuedChunks(streamID))

    def queuedBytes(self) -> int:
        """Response bytes waiting in this connection for the client."""
        return _byteCount(self.allQueuedChunks())


def _byteCount(chunks: Iterable[object]) -> int:
    """The bytes in a stream's send queue (which also holds markers)."""
    return sum(len(chunk) for chunk in chunks if isinstance(chunk, bytes))


@implementer(IHandshakeListener)
class _Negotiating(Protocol):
    """
    A TLS connection until its handshake is done: its listener's
    HTTP/1.1 channel meanwhile, then whichever protocol ALPN chose, given
    the TLS transport directly.
    """

    def __init__(self, site: ListenerSite, channel: IProtocol) -> None:
        self._site = site
        self._protocol: IProtocol = channel

    transport: Any

    def connectionMade(self) -> None:
        self._protocol.makeConnection(self.transport)

    def handshakeCompleted(self) -> None:
        transport: Any = self.transport
        if getattr(transport, "negotiatedProtocol", None) == b"h2":
            self._protocol = self._speakH2(transport)
        if getattr(transport, "wrappedProtocol", None) is self:
            transport.wrappedProtocol = self._protocol

    def _speakH2(self, transport: Any) -> H2ProxyConnection:
        channel = self._protocol
        connection = H2ProxyConnection(self._site)
        self._site.connections.add(connection)
        # The HTTP/1.1 channel lets go: its producer role, timer and place
        # among the listener's connections.
        transport.unregisterProducer()
        channel.connectionLost(Failure(ConnectionDone("the client speaks HTTP/2")))
        connection.makeConnection(transport)
        transport.registerProducer(connection, True)
        return connection

    # Until then (or where TLS cannot be handed over): passed on.

    def dataReceived(self, data: bytes) -> None:
        self._protocol.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._protocol.connectionLost(reason)


class NegotiatingFactory(Factory):
    """
    The factory of a TLS listener that offers C{h2}: wrap it in
    C{TLSMemoryBIOFactory} in place of the listener's L{HTTPProxyFactory},
    which keeps serving HTTP/1.1 and counts, drains and cuts both kinds of
    connection.
    """

    noisy = False

    def __init__(self, site: ListenerSite) -> None:
        self.site = site

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        channel = self.site.buildProtocol(addr)
        assert channel is not None
        return _Negotiating(self.site, channel)

    def startFactory(self) -> None:
        self.site.doStart()

    def stopFactory(self) -> None:
        self.site.doStop()


__all__ = ["STREAM_BUFFER", "H2ProxyConnection", "NegotiatingFactory"]
