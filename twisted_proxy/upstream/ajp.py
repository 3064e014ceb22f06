"""
An AJP13 connection to a servlet container (Tomcat): what an C{ajp://}
backend's requests travel on, pooled as HTTP/1.1 ones are
(L{twisted_proxy.upstream.pool}) and driven by the same exchange.

The exchange hands it a C{FORWARD_REQUEST} packet (built by
L{twisted_proxy.frontends.ajprequest}) and the body as the client sends
it. The body goes only as the container asks: the first packet at once when
the request declares a length, each next one on a C{GET_BODY_CHUNK}, at
most what was asked, and an empty packet once the body is over. What the
client sends ahead waits here, and the client is paused while more than
L{BODY_HELD} bytes wait, so a body never outruns the container and no byte
of it can reach the stream outside a body packet (CVE-2022-26377).

The answer (C{SEND_HEADERS}, C{SEND_BODY_CHUNK}, C{END_RESPONSE}) is read
strictly (L{twisted_proxy.core.ajp}): a header an HTTP/1.1 backend could
not send, a body longer or shorter than its Content-Length, a message out of
turn, is a protocol failure and the connection is dropped. It is reused
only when the container says so and nothing asked of us is left unanswered.
L{ping} sends a C{CPING} and waits for the C{CPONG}: the pool does it before
lending a connection that sat idle.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from zope.interface import implementer

from twisted_proxy._twisted_internals import sendNow
from twisted_proxy.core.ajp import (
    CPING,
    END_OF_BODY,
    MAX_BODY_CHUNK,
    AJPError,
    bodyPacket,
)
from twisted_proxy.core.ajpreply import (
    BodyChunk,
    BodyCount,
    CPong,
    EndResponse,
    GetBodyChunk,
    Message,
    ResponseHead,
    ResponseReader,
    checkedHead,
)
from twisted_proxy.core.timer import PurposeTimer
from twisted_proxy.upstream.interfaces import (
    FAIL_PROTOCOL,
    FAIL_RESET,
    FAIL_TIMEOUT,
    Address,
    IResponseSink,
)

__all__ = ["BODY_HELD", "AJPConnection", "PingError"]

BODY_HELD = 65536
"""Request body bytes held for the container before the client is paused."""

_RESPONSE = "response"
_IDLE = "idle"
_PING = "ping"


_lastDate: list[Any] = [None, b""]


def _httpDate(now: float) -> bytes:
    """C{now} as an HTTP date, made once per second."""
    second = int(now)
    if _lastDate[0] != second:
        _lastDate[:] = [second, datetimeToString(second)]
    date: bytes = _lastDate[1]
    return date


class PingError(Exception):
    """A container did not answer a C{CPING} with a C{CPONG}."""


@implementer(IPushProducer)
class _BodyGate:
    """
    Where the client's reading is registered while a body goes to the
    container: paused while the connection holds more than L{BODY_HELD}
    bytes the container has not asked for yet.
    """

    def __init__(self) -> None:
        self.producer: Any = None
        self.paused = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        self.paused = False

    def unregisterProducer(self) -> None:
        self.producer = None

    def hold(self, held: int) -> None:
        """C{held} body bytes wait for the container: pause or resume."""
        producer = self.producer
        if producer is None:
            return
        if held > BODY_HELD and not self.paused:
            self.paused = True
            producer.pauseProducing()
        elif held <= BODY_HELD // 2 and self.paused:
            self.paused = False
            producer.resumeProducing()

    # The gate itself is never paused: the pool's idle connection has no
    # producer registered, and a busy one's is the client's reading.
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IPushProducer)
class AJPConnection(Protocol):
    """One AJP13 connection to a servlet container, one request at a time."""

    transport: Any

    def __init__(self, pool: Any, address: Address) -> None:
        self._pool = pool
        self.address = address
        self._reader = ResponseReader()
        self._sink: IResponseSink | None = None
        self._method = b""
        self._timeout = 0.0
        self._timer = PurposeTimer(pool.clock.callLater, self._timerFired)
        self._paused = False
        self._lost = False
        self._whenLost: list[Deferred[None]] = []
        self._ping: Deferred[AJPConnection] | None = None
        self.requestsSent = 0
        self.connectedAt = 0.0
        self.lastUsed = 0.0
        self.handshaking = False
        # The request body: what waits for the container, whether the
        # client sent all of it, what the container asked for and has not
        # got (a first packet is owed at once when the length is declared).
        self._held: list[bytes] = []
        self._heldBytes = 0
        self._bodyDone = True
        self._owed = 0
        self._gate = _BodyGate()
        # The response: its head seen, its body counted, bytes received.
        self._count: BodyCount | None = None
        self._received = 0

    # -- Protocol --

    def connectionMade(self) -> None:
        self.connectedAt = self._pool.clock.seconds()
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)

    def whenReady(self) -> Deferred[AJPConnection]:
        """Fires with this connection at once: AJP has no handshake."""
        return succeed(self)

    def dataReceived(self, data: bytes) -> None:
        if self._sink is None and self._ping is None:
            # Bytes from an idle container: it is confused; do not reuse it.
            self._pool.discard(self)
            self.transport.loseConnection()
            return
        self._received += len(data)
        try:
            messages = self._reader.feed(data)
        except AJPError as e:
            self._broken(f"bad AJP from backend: {e}")
            return
        sink = self._sink
        if sink is not None:
            sink.batchStarted()
        try:
            for index, message in enumerate(messages):
                if self._lost or (sink is not None and self._sink is not sink):
                    # Dropped meanwhile (the client left): read no further.
                    break
                if not self._handle(message):
                    if index + 1 < len(messages) or self._reader.pending:
                        # More after the last word of an exchange (a CPONG,
                        # an END_RESPONSE): the container is confused.
                        raise AJPError("bytes after the end of an exchange")
                    break
        except AJPError as e:
            self._broken(f"bad AJP from backend: {e}")
        finally:
            if sink is not None:
                sink.batchEnded()
        if self._sink is not None:
            self._rearm()

    def _handle(self, message: Message) -> bool:
        """Act on one message; False once the connection has nothing more to do."""
        if isinstance(message, CPong):
            ping, self._ping = self._ping, None
            if ping is None:
                raise AJPError("a CPONG that no CPING asked for")
            self._timer.cancel()
            ping.callback(self)
            return False
        sink = self._sink
        if sink is None:
            raise AJPError(f"{type(message).__name__} while no request was sent")
        if isinstance(message, BodyChunk):
            if self._count is None:
                raise AJPError("SEND_BODY_CHUNK before SEND_HEADERS")
            self._count.take(len(message.data))
            if message.data:
                sink.responseData(message.data)
        elif isinstance(message, GetBodyChunk):
            if self._owed:
                raise AJPError("GET_BODY_CHUNK before the last one was answered")
            self._owed = min(message.size, MAX_BODY_CHUNK) or MAX_BODY_CHUNK
            self._sendBody()
        elif isinstance(message, ResponseHead):
            if self._count is not None:
                raise AJPError("a second SEND_HEADERS")
            self._count = checkedHead(message, self._method)
            # Tomcat sends the status code itself as the reason: the
            # client gets the standard phrase instead.
            reason = message.reason
            if reason == b"%d" % message.status:
                reason = b""
            headers = message.headers
            if not self._count.dated:
                # Tomcat leaves Date to the web server in front over AJP:
                # the proxy adds it (RFC 9110 6.6.1), as Apache does.
                headers.append((b"Date", _httpDate(self._pool.clock.seconds())))
            sink.responseStarted(message.status, reason, headers)
        elif isinstance(message, EndResponse):
            if self._count is None:
                raise AJPError("END_RESPONSE before SEND_HEADERS")
            self._count.end()
            self._ended(message.reuse)
            return False
        return True

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self._lost = True
        self._timer.close()
        self._pool.discard(self)
        self._gate.hold(0)
        detail = reason.getErrorMessage() if reason is not None else "closed"
        ping, self._ping = self._ping, None
        if ping is not None:
            ping.errback(Failure(PingError(f"connection closed ({detail})")))
        if self._sink is not None:
            # Nothing of an answer on a reused connection: the container had
            # closed it while idle, so the request never reached it.
            retryable = self.requestsSent > 1 and self._received == 0
            self._fail(
                FAIL_RESET, f"backend closed the connection ({detail})", retryable
            )
        for d in self._whenLost:
            d.callback(None)
        self._whenLost = []

    # -- used by the pool --

    def ping(self, timeout: float) -> Deferred[AJPConnection]:
        """
        Send C{CPING}: fires with this connection on C{CPONG}, or fails with
        L{PingError} (the connection dropped) when none comes in C{timeout}
        seconds or the connection closes. Cancelling it drops the connection.
        """
        self._ping = Deferred(self._cancelPing)
        self._timer.arm(timeout, _PING)
        sendNow(self.transport, CPING)
        return self._ping

    def _cancelPing(self, ping: Deferred[AJPConnection]) -> None:
        self._ping = None
        self.abort()

    def idleFor(self, seconds: float) -> None:
        """The connection waits in the pool: it is closed after C{seconds}."""
        self._timer.arm(seconds, _IDLE)

    def unpooled(self) -> None:
        """The pool let go of the connection: an idle one's timer stops."""
        if self._sink is None and self._ping is None:
            self._timer.cancel()

    @property
    def lost(self) -> bool:
        """Whether the connection is closed."""
        return self._lost

    def whenLost(self) -> Deferred[None]:
        """A Deferred that fires once the connection is closed."""
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._whenLost.append(d)
        return d

    # -- used by the exchange --

    def sendRequest(
        self,
        head: bytes,
        method: bytes,
        sink: IResponseSink,
        timeout: float,
        chunked: bool,
        bodyDone: bool,
        body: list[bytes] | None = None,
    ) -> None:
        """
        Send the C{FORWARD_REQUEST} packet C{head}, then the body as the
        container asks for it: C{body} is its start, already in hand, the
        rest comes by L{writeBody}. A body of declared length (not
        C{chunked}) has its first packet sent at once, as AJP13 has it.
        """
        self._sink = sink
        self._method = method
        self._timeout = timeout
        self._count = None
        self._received = 0
        self.requestsSent += 1
        self._bodyDone = bodyDone
        self._held = [piece for piece in body or () if piece]
        self._heldBytes = sum(map(len, self._held))
        hasBody = bool(self._heldBytes) or not bodyDone
        self._owed = MAX_BODY_CHUNK if hasBody and not chunked else 0
        sendNow(self.transport, head)
        self._sendBody()
        self._rearm()

    def writeBody(self, data: bytes) -> None:
        """A piece of the request body: held until the container asks."""
        if self._sink is None or self._bodyDone or not data:
            return
        self._held.append(data)
        self._heldBytes += len(data)
        self._sendBody()
        self._rearm()

    def finishBody(self) -> None:
        """The client sent the whole body."""
        if self._sink is None:
            return
        self._bodyDone = True
        self._sendBody()
        self._rearm()

    def uploadConsumer(self) -> Any:
        """The client's reading is paused while too much body waits here."""
        return self._gate

    def uploadBlocked(self) -> None:
        # The timer is set by what the container is waiting for (_rearm).
        pass

    def uploadFlowing(self) -> None:
        pass

    def abort(self) -> None:
        """Give up on this exchange: the connection is dropped, never reused."""
        self._sink = None
        self._timer.cancel()
        self._pool.discard(self)
        if not self._lost:
            self.transport.abortConnection()

    # -- the body, as asked --

    def _sendBody(self) -> None:
        """Answer what the container asked for, if there is something to send."""
        owed = self._owed
        if owed and self._heldBytes:
            data = b"".join(self._held)
            piece, rest = data[:owed], data[owed:]
            self._held = [rest] if rest else []
            self._heldBytes = len(rest)
            self._owed = 0
            sendNow(self.transport, bodyPacket(piece))
        elif owed and self._bodyDone:
            self._owed = 0
            sendNow(self.transport, END_OF_BODY)
        self._gate.hold(self._heldBytes)

    # -- IPushProducer: the client's transport pauses us when it is full --

    def pauseProducing(self) -> None:
        if not self._paused and not self._lost:
            self._paused = True
            self.transport.pauseProducing()
            # A slow client is not a slow backend: stop the response clock.
            self._timer.cancel()

    def resumeProducing(self) -> None:
        if self._paused and not self._lost:
            self._paused = False
            self.transport.resumeProducing()
            if self._sink is not None:
                self._rearm()

    def stopProducing(self) -> None:
        self.abort()

    # -- endings and the clock --

    def _ended(self, reuse: bool) -> None:
        sink, self._sink = self._sink, None
        self._timer.forget()
        self._gate.hold(0)
        # Reused only when nothing is owed either way: an unanswered ask, or
        # a first body packet never sent, would put the stream out of step.
        reusable = reuse and not self._owed and not self._lost
        self._held = []
        self._heldBytes = 0
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if sink is not None:
            sink.responseFinished()
        if reusable:
            self.lastUsed = self._pool.clock.seconds()
            self._pool.release(self)
        else:
            self._timer.cancel()
            if not self._lost:
                self._pool.discard(self)
                self.transport.loseConnection()

    def _rearm(self) -> None:
        """
        The backend's clock runs while the proxy waits on it: not while the
        client is slow to take the answer, nor while the container waits for
        body the client has not sent yet (the client's timeouts apply then).
        """
        if self._sink is None or self._paused:
            return
        if self._owed and not self._heldBytes and not self._bodyDone:
            self._timer.cancel()
        else:
            self._timer.arm(self._timeout, _RESPONSE)

    def _timerFired(self, purpose: str | None) -> None:
        if purpose == _RESPONSE:
            self._fail(
                FAIL_TIMEOUT,
                f"no answer from backend within {self._timeout:g}s",
                False,
            )
            self.abort()
        elif purpose == _IDLE:
            self._pool.expire(self)
        elif purpose == _PING:
            ping, self._ping = self._ping, None
            self.abort()
            if ping is not None:
                ping.errback(Failure(PingError("no CPONG in time")))

    def _broken(self, detail: str) -> None:
        ping, self._ping = self._ping, None
        self._fail(FAIL_PROTOCOL, detail, False)
        self._pool.discard(self)
        if not self._lost:
            self.transport.abortConnection()
        if ping is not None:
            ping.errback(Failure(PingError(detail)))

    def _fail(self, kind: str, detail: str, retryable: bool) -> None:
        sink, self._sink = self._sink, None
        self._timer.cancel()
        if sink is not None:
            sink.responseFailed(kind, detail, retryable)
